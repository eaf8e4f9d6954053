-- Custom SQL migration: crypto-shredding. Typed clients encrypt the personal fields of payloads with a key per
-- subject (subject_keys, 0019), and decrypt them on load; forgetting a subject deletes its keys, so that what they
-- encrypted can never be read again while the log stays append-only. The keys are read by whoever reads the log and
-- written through these functions; forget_subject is the owner's alone, and leaves an audit row (subject_erasures).

-- API: the key to encrypt a subject's personal data with now: its newest, or v_candidate (32 random bytes the
-- caller drew) under v_key_id when it has none. Two writers that race for a first key both get the one stored
-- (a unique index, not a lock: YugabyteDB runs it too).
-- A subject forgotten before gets a new key: new data about it is new data.
-- Example (32 random bytes: pgcrypto's gen_random_bytes(32), or your client's):
--   SELECT * FROM subject_key('customer-42', gen_random_uuid(), decode(repeat('ab', 32), 'hex'));
CREATE OR REPLACE FUNCTION subject_key(v_subject text, v_key_id uuid, v_candidate bytea)
    RETURNS TABLE (key_id uuid, key bytea)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$subject_key$
#variable_conflict use_column
BEGIN
    IF v_subject IS NULL OR v_subject = '' THEN
        RAISE EXCEPTION 'subject_key: the subject must be a name, got %', coalesce(quote_literal(v_subject), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT k.key_id, k.key
                 FROM subject_keys k
                 WHERE k.subject = v_subject
                 ORDER BY k.created_at DESC, k.key_id
                 LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    -- The first key: a writer racing for it waits on subject_keys_first_key, then stores nothing and reads the
    -- other's (a statement of its own, so it sees that commit).
    INSERT INTO subject_keys (key_id, subject, key)
    VALUES (v_key_id, v_subject, v_candidate)
    ON CONFLICT (subject) WHERE first DO NOTHING;
    RETURN QUERY SELECT k.key_id, k.key
                 FROM subject_keys k
                 WHERE k.subject = v_subject
                 ORDER BY k.created_at DESC, k.key_id
                 LIMIT 1;
END;
$subject_key$;
--> statement-breakpoint
-- API: rotates a subject's key: v_key (32 bytes) encrypts from now on, the older keys still decrypt what they
-- encrypted. Returns the new key's id.
-- Example: SELECT rotate_subject_key('customer-42', gen_random_uuid(), decode(repeat('cd', 32), 'hex'));
CREATE OR REPLACE FUNCTION rotate_subject_key(v_subject text, v_key_id uuid, v_key bytea)
    RETURNS uuid
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp AS
$rotate_subject_key$
BEGIN
    IF v_subject IS NULL OR v_subject = '' THEN
        RAISE EXCEPTION 'rotate_subject_key: the subject must be a name, got %',
            coalesce(quote_literal(v_subject), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- created_at is the transaction's start: a key made earlier in the same transaction must still come first.
    INSERT INTO subject_keys (key_id, subject, key, first, created_at)
    VALUES (v_key_id, v_subject, v_key, false,
            greatest(now(), (SELECT max(k.created_at) + interval '1 microsecond'
                             FROM subject_keys k
                             WHERE k.subject = v_subject)));
    RETURN v_key_id;
END;
$rotate_subject_key$;
--> statement-breakpoint
-- API: the keys of these ids, to decrypt with: each id once, its key, or a null key when its subject was forgotten
-- (forgotten true). An id that is neither (an unknown key) is not returned.
-- Example: SELECT * FROM subject_keys(ARRAY['…']::uuid[]);
CREATE OR REPLACE FUNCTION subject_keys(v_key_ids uuid[])
    RETURNS TABLE (key_id uuid, key bytea, forgotten boolean)
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$subject_keys$
SELECT k.key_id, k.key, false
FROM subject_keys k
WHERE k.key_id = ANY (v_key_ids)
UNION ALL
SELECT DISTINCT ids.key_id, NULL::bytea, true
FROM unnest(v_key_ids) AS ids(key_id)
         JOIN subject_erasures e ON ids.key_id = ANY (e.key_ids)
WHERE NOT EXISTS (SELECT 1 FROM subject_keys k WHERE k.key_id = ids.key_id);
$subject_keys$;
--> statement-breakpoint
-- API, for the owner only (never granted by least-privilege.sql): forgets a subject. Its keys are deleted, so that
-- the personal data they encrypted reads as forgotten everywhere from now on; an audit row says who asked, when, and
-- which keys went. Returns how many keys were deleted. Snapshots (0017) are folded states, which may hold the
-- subject's data decrypted, and they are a cache: all of them go (each stream's next command reads it whole once).
-- Read models built before still hold what they projected: rebuild them (their handlers then get the placeholder).
-- Example: SELECT forget_subject('customer-42');
CREATE OR REPLACE FUNCTION forget_subject(v_subject text)
    RETURNS integer
    LANGUAGE plpgsql
    SET search_path = pg_catalog, public, pg_temp AS
$forget_subject$
DECLARE
    v_key_ids uuid[];
BEGIN
    IF v_subject IS NULL OR v_subject = '' THEN
        RAISE EXCEPTION 'forget_subject: the subject must be a name, got %', coalesce(quote_literal(v_subject), 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH deleted AS (DELETE FROM subject_keys k WHERE k.subject = v_subject RETURNING k.key_id)
    SELECT coalesce(array_agg(d.key_id), '{}') INTO v_key_ids FROM deleted d;
    DELETE FROM snapshots;
    INSERT INTO subject_erasures (subject, key_ids, forgotten_by) VALUES (v_subject, v_key_ids, session_user);
    RETURN cardinality(v_key_ids);
END;
$forget_subject$;
--> statement-breakpoint
REVOKE EXECUTE ON FUNCTION
    subject_key(text, uuid, bytea),
    rotate_subject_key(text, uuid, bytea),
    forget_subject(text)
    FROM PUBLIC;
--> statement-breakpoint
-- Whoever may append may draw and rotate keys, and whoever may read events may read the keys that decrypt them: the
-- new functions are granted as append_events and get_events(text, text) are, the new tables as events is.
-- forget_subject is granted to nobody.
DO
$grant_like_siblings$
DECLARE
    v_pair    record;
    v_grantee text;
BEGIN
    FOR v_pair IN SELECT p.fn, p.sibling
                  FROM (VALUES ('subject_key(text, uuid, bytea)'::regprocedure,
                                'append_events(text, text, uuid, uuid, jsonb)'::regprocedure),
                               ('rotate_subject_key(text, uuid, bytea)'::regprocedure,
                                'append_events(text, text, uuid, uuid, jsonb)'::regprocedure),
                               ('subject_keys(uuid[])'::regprocedure, 'get_events(text, text)'::regprocedure))
                           AS p(fn, sibling)
        LOOP
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_pair.fn);
            FOR v_grantee IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                             FROM pg_proc s
                                      CROSS JOIN LATERAL aclexplode(coalesce(s.proacl, acldefault('f', s.proowner))) a
                             WHERE s.oid = v_pair.sibling
                               AND a.privilege_type = 'EXECUTE'
                               AND a.grantee <> s.proowner
                LOOP
                    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', v_pair.fn, v_grantee);
                END LOOP;
        END LOOP;
    FOR v_grantee IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                     FROM pg_class c
                              CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                     WHERE c.oid = 'public.events'::regclass
                       AND a.privilege_type = 'SELECT'
                       AND a.grantee <> c.relowner
        LOOP
            EXECUTE format('GRANT SELECT ON TABLE public.subject_keys, public.subject_erasures TO %s', v_grantee);
        END LOOP;
END
$grant_like_siblings$;
