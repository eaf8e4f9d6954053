-- Custom SQL migration: close the race between registering a view and appending. Without it, an append in flight
-- while a view registered could be missed by both: the registration's read of the log did not see the uncommitted
-- event, and the append's trigger did not see the uncommitted view, so that stream had no lock row (or a stale
-- head) for the view until its next append (src/bad-input.test.ts, "views registered while appends run").
-- view_registration_gate orders the two: appending statements lock its one row FOR SHARE (many at once, no
-- waiting among them), a registration updates it (waiting for the appends in flight, holding back new ones).
-- Row locks (and a queued table lock for registrations), not advisory locks, which YugabyteDB lacks before 2025.1.
-- Under REPEATABLE READ, an append that raced a registration gets a serialization failure (40001), to retry.

INSERT INTO view_registration_gate (id, generation) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION on_insert_on_events() RETURNS trigger
    LANGUAGE plpgsql AS
$on_insert_on_events$
BEGIN
    -- Wait for a view registration in progress, then see its view (this is a new statement, with a new snapshot).
    PERFORM 1 FROM view_registration_gate g WHERE g.id = 1 FOR SHARE;
    INSERT INTO locks (view, decider_id, "offset", last_offset, locked_until, offset_final)
    SELECT v.view, n.decider_id, max(n."offset"), 0, now(), bool_or(n.final)
    FROM new_events n
             CROSS JOIN views v
    GROUP BY v.view, n.decider_id
    ON CONFLICT ON CONSTRAINT locks_pkey DO UPDATE
        SET "offset"     = greatest(locks."offset", EXCLUDED."offset"),
            offset_final = locks.offset_final OR EXCLUDED.offset_final,
            updated_at   = now();
    RETURN NULL;
END;
$on_insert_on_events$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION reset_view_positions(v_view text, v_start_at timestamp) RETURNS void
    LANGUAGE plpgsql AS
$reset_view_positions$
BEGIN
    -- Wait for appends in flight to commit (they hold the gate FOR SHARE) and hold back new ones until this
    -- registration commits: the read of the log below then sees every event whose append did not see the view.
    -- The table lock comes first because row locks are not queued: with appends always in flight, new FOR SHARE
    -- lockers would keep joining the current ones and the UPDATE would wait for ever. A table lock request is
    -- queued, and new appends wait behind it. (Where LOCK TABLE is not supported, the row lock alone still orders
    -- registrations and appends, without that guarantee of progress.)
    BEGIN
        LOCK TABLE view_registration_gate IN EXCLUSIVE MODE;
    EXCEPTION
        WHEN feature_not_supported THEN NULL;
    END;
    UPDATE view_registration_gate g SET generation = g.generation + 1 WHERE g.id = 1;
    INSERT INTO locks (view, decider_id, "offset", last_offset, locked_until, offset_final)
    SELECT v_view,
           s.decider_id,
           s.head,
           coalesce(s.first_to_read - 1, s.head),
           now(),
           s.final
    FROM (SELECT e.decider_id,
                 max(e."offset")                                         AS head,
                 min(e."offset") FILTER (WHERE e.created_at >= v_start_at) AS first_to_read,
                 bool_or(e.final)                                        AS final
          FROM events e
          GROUP BY e.decider_id) s
    ON CONFLICT ON CONSTRAINT locks_pkey DO UPDATE
        SET "offset"     = EXCLUDED."offset",
            last_offset  = EXCLUDED.last_offset,
            offset_final = EXCLUDED.offset_final,
            locked_until = now(),
            lease_id     = NULL,
            attempts     = 0,
            last_error   = NULL,
            updated_at   = now();
    DELETE FROM parked_events p WHERE p.view = v_view;
END;
$reset_view_positions$;
