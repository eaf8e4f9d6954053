-- Custom SQL migration: acknowledge many streams' leases at once. A projection worker handling many small streams
-- (one event each, say) handles several in one transaction and acknowledges them in one statement, instead of a
-- transaction and an acknowledgement per stream.

-- API: the holder of several leases of one view acknowledges each stream up to its offset and releases them, in the
-- caller's transaction, all or nothing: if any lease is no longer held (or an offset is not an event of its
-- stream), it raises 55P03 locks_lease_held and the caller's transaction must roll back; ack_events then tells
-- which stream it was.
-- Example: SELECT ack_leases('view1', ARRAY['s1', 's2'], ARRAY['…'::uuid, '…'::uuid], ARRAY[41, 42]);
CREATE OR REPLACE FUNCTION ack_leases(v_view text, v_decider_ids text[], v_lease_ids uuid[], v_offsets bigint[])
    RETURNS integer
    LANGUAGE plpgsql AS
$ack_leases$
DECLARE
    v_count integer;
BEGIN
    IF v_view IS NULL OR v_decider_ids IS NULL OR v_lease_ids IS NULL OR v_offsets IS NULL
        OR cardinality(v_decider_ids) <> cardinality(v_lease_ids) OR cardinality(v_decider_ids) <> cardinality(v_offsets) THEN
        RAISE EXCEPTION 'ack_leases: view, streams, leases and offsets must be given, the three arrays of one length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE locks l
    SET last_offset  = greatest(l.last_offset, x.ack_offset),
        locked_until = now(),
        lease_id     = NULL,
        attempts     = 0,
        last_error   = NULL,
        updated_at   = now()
    FROM unnest(v_decider_ids, v_lease_ids, v_offsets) AS x(decider_id, lease_id, ack_offset)
    WHERE l.view = v_view
      AND l.decider_id = x.decider_id
      AND l.lease_id = x.lease_id
      AND EXISTS (SELECT 1 FROM events e WHERE e."offset" = x.ack_offset AND e.decider_id = x.decider_id);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count <> cardinality(v_decider_ids) THEN
        RAISE EXCEPTION 'ack_leases: % of % leases of view % are no longer held (or an offset is not in its stream)',
            cardinality(v_decider_ids) - v_count, cardinality(v_decider_ids), v_view
            USING ERRCODE = 'lock_not_available', CONSTRAINT = 'locks_lease_held';
    END IF;
    RETURN v_count;
END;
$ack_leases$;
