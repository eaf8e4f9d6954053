-- Custom SQL migration: acknowledge many streams' leases at once. A projection worker handling many small streams
-- (one event each, say) handles several in one transaction and acknowledges them in one statement, instead of a
-- transaction and an acknowledgement per stream.

-- API: the holder of several leases of one view acknowledges each stream up to its offset and releases them, in the
-- caller's transaction, all or nothing: if any lease is no longer held (or an offset is not an event of its
-- stream), it raises 55P03 locks_lease_held and the caller's transaction must roll back; ack_events then tells
-- which stream it was. v_acks is a JSON array of {"decider_id", "lease_id", "offset"} (JSON, like append_events'
-- batch: any stream id travels unchanged, whatever the driver).
-- Example: SELECT ack_leases('view1', '[{"decider_id": "s1", "lease_id": "…", "offset": 41}]');
CREATE OR REPLACE FUNCTION ack_leases(v_view text, v_acks jsonb)
    RETURNS integer
    LANGUAGE plpgsql AS
$ack_leases$
DECLARE
    v_count    integer;
    v_expected integer;
BEGIN
    IF v_view IS NULL OR v_acks IS NULL OR jsonb_typeof(v_acks) <> 'array' THEN
        RAISE EXCEPTION 'ack_leases: a view and a JSON array of acknowledgements must be given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_expected := jsonb_array_length(v_acks);
    UPDATE locks l
    SET last_offset  = greatest(l.last_offset, x.ack_offset),
        locked_until = now(),
        lease_id     = NULL,
        attempts     = 0,
        last_error   = NULL,
        updated_at   = now()
    FROM (SELECT a ->> 'decider_id' AS decider_id, (a ->> 'lease_id')::uuid AS lease_id,
                 (a ->> 'offset')::bigint AS ack_offset
          FROM jsonb_array_elements(v_acks) AS a) x
    WHERE l.view = v_view
      AND l.decider_id = x.decider_id
      AND l.lease_id = x.lease_id
      AND EXISTS (SELECT 1 FROM events e WHERE e."offset" = x.ack_offset AND e.decider_id = x.decider_id);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count <> v_expected THEN
        RAISE EXCEPTION 'ack_leases: % of % leases of view % are no longer held (or an offset is not in its stream)',
            v_expected - v_count, v_expected, v_view
            USING ERRCODE = 'lock_not_available', CONSTRAINT = 'locks_lease_held';
    END IF;
    RETURN v_count;
END;
$ack_leases$;
