-- Custom SQL migration: view_lag(), the part of view_status() whose cost follows the backlog only. view_status()
-- also counts every lock row of each view and every archived stream it reads: with a million streams and ten views
-- that is ten million index entries a call, too much for what polls once a second (the dashboard, OpenTelemetry's
-- lag gauges). view_status() is now view_lag() plus those two counts, so the two cannot disagree.

-- API: how far behind each view is, at a cost that follows its backlog (pending lock rows, events past its
-- frontier, parked events), never the number of its streams.
-- Example: SELECT view, events_behind, oldest_unacked_at FROM view_lag();
CREATE FUNCTION view_lag()
    RETURNS TABLE (view text, pending_streams bigint, leased_streams bigint, stopped_streams bigint,
                   events_behind bigint, oldest_unacked_at timestamptz, parked_events bigint,
                   subscribed_deciders text[], subscribed_events text[])
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp
    -- The planner takes `last_offset < offset` for a third of a view's lock rows, and with the default random page
    -- cost it then reads all of them through the primary key (seen: 87 ms a view with 100,000 handled streams) rather
    -- than the few pending ones through locks_pending_idx (under a millisecond). The cost SSDs have.
    SET random_page_cost = 1.1 AS
$view_lag$
SELECT v.view,
       coalesce(p.pending_streams, 0),
       coalesce(p.leased_streams, 0),
       coalesce(p.stopped_streams, 0),
       coalesce(p.events_behind, 0) + coalesce(f.events, 0),
       CASE
           WHEN p.oldest_unacked_at IS NULL THEN f.oldest
           WHEN f.oldest IS NULL THEN p.oldest_unacked_at
           ELSE least(p.oldest_unacked_at, f.oldest) END,
       (SELECT count(*) FROM parked_events pe WHERE pe.view = v.view),
       v.subscribed_deciders,
       v.subscribed_events
FROM views v
         LEFT JOIN view_frontiers vf ON vf.view = v.view
         -- The lock rows with unread events only (locks_pending_idx).
         LEFT JOIN LATERAL (SELECT count(*)                                                        AS pending_streams,
                                   count(*) FILTER (WHERE l.locked_until > now() AND l.locked_until < 'infinity')
                                                                                                   AS leased_streams,
                                   count(*) FILTER (WHERE l.locked_until = 'infinity')             AS stopped_streams,
                                   sum(behind.events)                                              AS events_behind,
                                   min(behind.oldest)                                              AS oldest_unacked_at
                            FROM locks l
                                     CROSS JOIN LATERAL (SELECT count(*) AS events, min(e.created_at) AS oldest
                                                         FROM events e
                                                         WHERE e.decider_id = l.decider_id
                                                           AND e."offset" > l.last_offset
                                                           -- later ones are past the frontier (below)
                                                           AND e."offset" <= l."offset"
                                                           AND (v.subscribed_deciders IS NULL
                                                             OR e.decider = ANY (v.subscribed_deciders))
                                                           AND (v.subscribed_events IS NULL
                                                             OR e.event = ANY (v.subscribed_events))) behind
                            WHERE l.view = v.view
                              AND l.last_offset < l."offset") p ON true
         -- Past the frontier: appended, not yet read into lock rows. Events created before start_at are skipped.
         LEFT JOIN LATERAL (SELECT count(*) AS events, min(e.created_at) AS oldest
                            FROM events e
                            WHERE (e.transaction_id, e."offset") > (vf.transaction_id, vf."offset")
                              AND e.created_at >= v.start_at
                              AND (v.subscribed_deciders IS NULL OR e.decider = ANY (v.subscribed_deciders))
                              AND (v.subscribed_events IS NULL OR e.event = ANY (v.subscribed_events))) f ON true
ORDER BY v.view;
$view_lag$;
--> statement-breakpoint
-- view_status(): view_lag() with the counts that grow with the log: every lock row of the view (streams), and the
-- archived streams it reads (0022).
CREATE OR REPLACE FUNCTION view_status()
    RETURNS TABLE (view text, streams bigint, pending_streams bigint, leased_streams bigint, stopped_streams bigint,
                   events_behind bigint, oldest_unacked_at timestamptz, parked_events bigint,
                   subscribed_deciders text[], subscribed_events text[], archived_streams bigint,
                   archived_events bigint)
    LANGUAGE sql
    STABLE
    SET search_path = pg_catalog, public, pg_temp AS
$view_status$
SELECT l.view,
       (SELECT count(*) FROM locks k WHERE k.view = l.view),
       l.pending_streams,
       l.leased_streams,
       l.stopped_streams,
       l.events_behind,
       l.oldest_unacked_at,
       l.parked_events,
       l.subscribed_deciders,
       l.subscribed_events,
       coalesce(a.streams, 0),
       coalesce(a.events, 0)
FROM view_lag() l
         JOIN views v ON v.view = l.view
         -- Left the log: the archived streams (removed since, or not) that the view reads, closed from start_at on.
         LEFT JOIN LATERAL (SELECT count(*) AS streams, sum(ar.events)::bigint AS events
                            FROM archived_streams ar
                            WHERE (v.subscribed_deciders IS NULL OR ar.decider = ANY (v.subscribed_deciders))
                              AND ar.closed_at >= v.start_at) a ON true
ORDER BY l.view;
$view_status$;
--> statement-breakpoint
-- Whoever may call view_status may call view_lag (PUBLIC, unless the least-privilege script revoked that).
DO
$grant_like_siblings$
DECLARE
    v_grantee text;
BEGIN
    REVOKE ALL ON FUNCTION view_lag() FROM PUBLIC;
    FOR v_grantee IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
                     FROM pg_proc s
                              CROSS JOIN LATERAL aclexplode(coalesce(s.proacl, acldefault('f', s.proowner))) a
                     WHERE s.oid = 'view_status()'::regprocedure
                       AND a.privilege_type = 'EXECUTE'
                       AND a.grantee <> s.proowner
        LOOP
            EXECUTE format('GRANT EXECUTE ON FUNCTION view_lag() TO %s', v_grantee);
        END LOOP;
END
$grant_like_siblings$;
