-- tally_apply_usage: a group of usage events decided and recorded in one call.
--
-- Does on PostgreSQL what limits/ledger.py does in Python (the reference, compared by
-- tests/limits/test_ledger_function.py): locks the group's counters in key order, looks the
-- idempotency keys up, decides the events in order, inserts the accepted ones, writes the
-- counters and allowances, adds the rollups and records the thresholds crossed; returns the
-- decisions and the new alerts. The counters stay locked only while PostgreSQL runs it. Installed (CREATE OR REPLACE) by every `tally migrate`, after the
-- tables' migrations: the function is code, shipped with the Python that calls it.
CREATE OR REPLACE FUNCTION tally_apply_usage(
    p_organization text,
    p_now timestamptz,
    e_resource text[],
    e_key text[],
    e_amount bigint[],
    e_period timestamptz[],
    e_occurred timestamptz[],
    e_model text[],
    e_action text[],
    e_cost bigint[],
    e_attributes text[],
    e_reserved bigint[],
    l_resource text[],
    l_limit bigint[],
    l_ceiling bigint[],
    l_resets boolean[],
    l_thresholds text[],
    l_cap bigint[]
) RETURNS TABLE (
    d_ord integer, d_status text, d_resource text, d_amount bigint, d_used bigint,
    d_limit bigint, d_reserved bigint, d_extra bigint
)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    n integer := cardinality(e_key);
    ev record;
    c_resource text[];
    c_period timestamptz[];
    c_used bigint[];
    c_reserved bigint[];
    c_drawn bigint[];
    c_used0 bigint[];
    c_drawn0 bigint[];
    c_touched boolean[];
    c_last integer[];
    a_known bigint[] := array_fill(0::bigint, ARRAY[cardinality(l_resource)]);
    a_read boolean[] := array_fill(false, ARRAY[cardinality(l_resource)]);
    a_changed boolean[] := array_fill(false, ARRAY[cardinality(l_resource)]);
    o_status text[] := array_fill(NULL::text, ARRAY[n]);
    o_resource text[] := array_fill(NULL::text, ARRAY[n]);
    o_amount bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    o_used bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    o_limit bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    o_reserved bigint[] := array_fill(0::bigint, ARRAY[n]);
    o_extra bigint[] := array_fill(0::bigint, ARRAY[n]);
    al_resource text[] := '{}';
    al_start timestamptz[] := '{}';
    al_kind text[] := '{}';
    al_threshold integer[] := '{}';
    al_used bigint[] := '{}';
    al_limit bigint[] := '{}';
    al_owner integer[] := '{}';
    al_recorded integer[] := '{}';
    c integer;
    l integer;
    t integer;
    lim bigint;
    ceiling_ bigint;
    room boolean;
    total numeric;
    old_used bigint;
    wanted bigint;
    taken bigint;
    remaining_ bigint;
    spent0 bigint;
    spent bigint;
    accepted integer := 0;
    inserted integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    -- The epoch lock, shared (limits/event_storage.py, EPOCH_LOCK): a new epoch of
    -- usage_events starts only once no writer holds it, so the keys looked up below include
    -- every earlier epoch's, and a concurrent insert of a key is in this epoch's partition,
    -- where its unique index finds it.
    PERFORM pg_advisory_xact_lock_shared(7461011108);

    -- Create the missing counters and lock all of them, in key order.
    WITH wanted_counters AS (
        SELECT DISTINCT u.r, u.p FROM unnest(e_resource, e_period) AS u(r, p)
    ), locked AS (
        INSERT INTO usage_counters AS uc (organization_id, resource, period_start, used, reserved, drawn)
        SELECT p_organization, w.r, w.p, 0, 0, 0 FROM wanted_counters AS w
        ORDER BY w.r COLLATE "C", w.p
        ON CONFLICT (organization_id, resource, period_start) DO UPDATE SET used = uc.used
        RETURNING uc.resource, uc.period_start, uc.used, uc.reserved, uc.drawn
    )
    SELECT array_agg(k.resource ORDER BY k.resource COLLATE "C", k.period_start),
           array_agg(k.period_start ORDER BY k.resource COLLATE "C", k.period_start),
           array_agg(k.used ORDER BY k.resource COLLATE "C", k.period_start),
           array_agg(k.reserved ORDER BY k.resource COLLATE "C", k.period_start),
           array_agg(k.drawn ORDER BY k.resource COLLATE "C", k.period_start)
      INTO c_resource, c_period, c_used, c_reserved, c_drawn
      FROM locked AS k;
    c_used0 := c_used;
    c_drawn0 := c_drawn;
    c_touched := array_fill(false, ARRAY[cardinality(c_resource)]);
    c_last := array_fill(NULL::integer, ARRAY[cardinality(c_resource)]);

    -- Holds expired by now leave the counters that have holds, before anything is decided.
    IF EXISTS (SELECT FROM unnest(c_reserved) AS h WHERE h > 0) THEN
        WITH gone AS (
            UPDATE usage_reservations AS ur SET status = 'expired'
              FROM unnest(c_resource, c_period, c_reserved) AS x(r, p, h)
             WHERE x.h > 0 AND ur.organization_id = p_organization AND ur.resource = x.r
               AND ur.period_start = x.p AND ur.status = 'held' AND ur.expires_at <= p_now
            RETURNING ur.resource, ur.period_start, ur.amount
        ), freed AS (
            SELECT g.resource, g.period_start, sum(g.amount) AS amount
              FROM gone AS g GROUP BY g.resource, g.period_start
        )
        SELECT array_agg(x.h - coalesce(f.amount, 0) ORDER BY x.i)
          INTO c_reserved
          FROM unnest(c_resource, c_period, c_reserved) WITH ORDINALITY AS x(r, p, h, i)
          LEFT JOIN freed AS f ON f.resource = x.r AND f.period_start = x.p;
    END IF;

    -- Decide in order; the keys are looked up after the lock.
    FOR ev IN
        SELECT u.ord::integer AS ord, u.r AS res, u.k AS ikey, u.a AS amt, u.h AS held,
               cc.i::integer AS ci, array_position(l_resource, u.r) AS li,
               lag(u.ord::integer) OVER (PARTITION BY u.k ORDER BY u.ord) AS prev,
               s.resource AS s_resource, s.amount AS s_amount, s.used_after AS s_used,
               s.limit_value AS s_limit
          FROM unnest(e_resource, e_key, e_amount, e_period, e_reserved)
               WITH ORDINALITY AS u(r, k, a, p, h, ord)
          JOIN unnest(c_resource, c_period) WITH ORDINALITY AS cc(r, p, i)
            ON cc.r = u.r AND cc.p = u.p
          LEFT JOIN usage_events AS s
            ON s.organization_ref = (SELECT o.ref FROM organization_refs AS o
                                      WHERE o.organization_id = p_organization)
           AND s.idempotency_key = u.k
         ORDER BY u.ord
    LOOP
        IF ev.s_resource IS NOT NULL THEN
            -- A recorded key: its first decision, `reused` if the resource or amount differ.
            o_status[ev.ord] := CASE WHEN ev.s_resource = ev.res AND ev.s_amount = ev.amt
                                     THEN 'duplicate' ELSE 'reused' END;
            o_resource[ev.ord] := ev.s_resource;
            o_amount[ev.ord] := ev.s_amount;
            o_used[ev.ord] := ev.s_used;
            o_limit[ev.ord] := ev.s_limit;
            CONTINUE;
        END IF;
        IF ev.prev IS NOT NULL AND o_status[ev.prev] <> 'rejected' THEN
            -- The key accepted earlier in the group: that decision, as a duplicate (`copy:`,
            -- its policy is the first event's), `reused` if the resource or amount differ.
            o_status[ev.ord] := CASE WHEN o_resource[ev.prev] = ev.res
                                          AND o_amount[ev.prev] = ev.amt
                                     THEN 'copy:duplicate' ELSE 'copy:reused' END;
            o_resource[ev.ord] := o_resource[ev.prev];
            o_amount[ev.ord] := o_amount[ev.prev];
            o_used[ev.ord] := o_used[ev.prev];
            o_limit[ev.ord] := o_limit[ev.prev];
            o_reserved[ev.ord] := o_reserved[ev.prev];
            o_extra[ev.ord] := o_extra[ev.prev];
            CONTINUE;
        END IF;
        c := ev.ci;
        l := ev.li;
        lim := l_limit[l];
        ceiling_ := l_ceiling[l];
        c_reserved[c] := c_reserved[c] - ev.held;
        total := c_used[c]::numeric + c_reserved[c] + ev.amt;
        IF l_resets[l] AND ev.amt > 0 AND lim IS NOT NULL AND NOT a_read[l]
           AND total > lim::numeric + c_drawn[c] THEN
            SELECT ua.remaining INTO remaining_ FROM usage_allowances AS ua
             WHERE ua.organization_id = p_organization AND ua.resource = ev.res FOR UPDATE;
            a_known[l] := coalesce(remaining_, 0);
            a_read[l] := true;
        END IF;
        room := CASE WHEN ev.amt <= 0 THEN c_used[c] + ev.amt >= 0
                     WHEN total > 9223372036854775807 THEN false
                     ELSE ceiling_ IS NULL
                          OR total <= ceiling_::numeric + c_drawn[c] + a_known[l]
                END;
        IF room THEN
            old_used := c_used[c];
            c_used[c] := c_used[c] + ev.amt;
            IF lim IS NOT NULL THEN
                wanted := c_used[c] - lim - c_drawn[c];
                taken := least(wanted, a_known[l]);
                IF taken > 0 THEN
                    c_drawn[c] := c_drawn[c] + taken;
                    a_known[l] := a_known[l] - taken;
                    a_changed[l] := true;
                END IF;
            END IF;
            c_touched[c] := true;
            c_last[c] := ev.ord;
            accepted := accepted + 1;
            o_status[ev.ord] := 'accepted';
            -- Percents of the limit crossed by this event, from below to at or above.
            IF lim IS NOT NULL AND lim <> 0 THEN
                FOREACH t IN ARRAY CAST(l_thresholds[l] AS integer[]) LOOP
                    IF old_used::numeric * 100 < t::numeric * lim
                       AND t::numeric * lim <= c_used[c]::numeric * 100 THEN
                        al_resource := al_resource || ev.res;
                        al_start := al_start
                            || CASE WHEN l_resets[l] THEN c_period[c] ELSE p_now END;
                        al_kind := al_kind || 'limit'::text;
                        al_threshold := al_threshold || t;
                        al_used := al_used || c_used[c];
                        al_limit := al_limit || lim;
                        al_owner := al_owner || ev.ord;
                    END IF;
                END LOOP;
            END IF;
        ELSE
            c_reserved[c] := c_reserved[c] + ev.held;
            o_status[ev.ord] := 'rejected';
        END IF;
        o_resource[ev.ord] := ev.res;
        o_amount[ev.ord] := ev.amt;
        o_used[ev.ord] := c_used[c];
        o_limit[ev.ord] := lim;
        o_reserved[ev.ord] := c_reserved[c];
        o_extra[ev.ord] := CASE WHEN l_resets[l] THEN c_drawn[c] + a_known[l] ELSE 0 END;
    END LOOP;

    -- A refused key that a concurrent transaction committed meanwhile is a replay.
    IF 'rejected' = ANY(o_status) THEN
        FOR ev IN
            SELECT u.ord::integer AS ord, s.resource, s.amount, s.used_after, s.limit_value
              FROM unnest(o_status, e_key) WITH ORDINALITY AS u(st, k, ord)
              JOIN usage_events AS s
                ON s.organization_ref = (SELECT o.ref FROM organization_refs AS o
                                          WHERE o.organization_id = p_organization)
               AND s.idempotency_key = u.k
             WHERE u.st = 'rejected'
        LOOP
            o_status[ev.ord] := CASE WHEN ev.resource = o_resource[ev.ord]
                                          AND ev.amount = o_amount[ev.ord]
                                     THEN 'duplicate' ELSE 'reused' END;
            o_resource[ev.ord] := ev.resource;
            o_amount[ev.ord] := ev.amount;
            o_used[ev.ord] := ev.used_after;
            o_limit[ev.ord] := ev.limit_value;
            o_reserved[ev.ord] := 0;
            o_extra[ev.ord] := 0;
        END LOOP;
    END IF;

    IF accepted > 0 THEN
        -- Into the newest epoch, the period as its first day (periods start at 00:00 UTC);
        -- e_attributes holds what the row keeps of each event's attributes (NULL: none
        -- beyond model and action).
        INSERT INTO usage_events (amount, used_after, limit_value, cost_micros, occurred_at,
                                  organization_ref, period_start, epoch, resource,
                                  idempotency_key, model, action, attributes)
        SELECT u.a, u.used, u.lim, u.cost, u.occ,
               (SELECT o.ref FROM organization_refs AS o
                 WHERE o.organization_id = p_organization),
               CAST(u.p AT TIME ZONE 'UTC' AS date),
               (SELECT max(ep.epoch) FROM usage_event_epochs AS ep),
               u.r, u.k, u.m, u.act, CAST(u.attrs AS json)
          FROM unnest(e_resource, e_key, e_amount, e_period, e_occurred, e_model, e_action,
                      e_cost, e_attributes, o_status, o_used, o_limit)
               AS u(r, k, a, p, occ, m, act, cost, attrs, st, used, lim)
         WHERE u.st = 'accepted'
        ON CONFLICT (organization_ref, idempotency_key, epoch) DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted <> accepted THEN
            RAISE EXCEPTION 'an idempotency key of the group was recorded meanwhile'
                USING ERRCODE = 'TL001';
        END IF;

        WITH accepted_events AS (
            SELECT u.r, u.occ, coalesce(u.m, '') AS m, coalesce(u.act, '') AS act, u.a, u.cost
              FROM unnest(e_resource, e_occurred, e_model, e_action, e_amount, e_cost, o_status)
                   AS u(r, occ, m, act, a, cost, st)
             WHERE u.st = 'accepted'
        ), binned AS (
            SELECT e.*, g.grain,
                   date_bin(make_interval(mins => g.grain), e.occ,
                            TIMESTAMPTZ '1970-01-01 00:00:00+00') AS bucket
              FROM accepted_events AS e CROSS JOIN (VALUES (15), (60), (1440)) AS g(grain)
        ), detailed AS (
            INSERT INTO usage_rollups AS ro (organization_id, resource, grain, bucket, model,
                                             action, amount, cost_micros, unpriced_amount, events)
            SELECT p_organization, b.r, b.grain, b.bucket, b.m, b.act, sum(b.a),
                   coalesce(sum(b.cost), 0), coalesce(sum(b.a) FILTER (WHERE b.cost IS NULL), 0),
                   count(*)
              FROM binned AS b
             GROUP BY b.r, b.grain, b.bucket, b.m, b.act
             ORDER BY b.r, b.grain, b.bucket, b.m, b.act
            ON CONFLICT (organization_id, resource, grain, bucket, model, action) DO UPDATE SET
                amount = ro.amount + excluded.amount,
                cost_micros = ro.cost_micros + excluded.cost_micros,
                unpriced_amount = ro.unpriced_amount + excluded.unpriced_amount,
                events = ro.events + excluded.events
        )
        INSERT INTO usage_rollup_totals AS rt (organization_id, resource, grain, bucket, amount,
                                               cost_micros, unpriced_amount, events)
        SELECT p_organization, b.r, b.grain, b.bucket, sum(b.a), coalesce(sum(b.cost), 0),
               coalesce(sum(b.a) FILTER (WHERE b.cost IS NULL), 0), count(*)
          FROM binned AS b
         GROUP BY b.r, b.grain, b.bucket
         ORDER BY b.r, b.grain, b.bucket
        ON CONFLICT (organization_id, resource, grain, bucket) DO UPDATE SET
            amount = rt.amount + excluded.amount,
            cost_micros = rt.cost_micros + excluded.cost_micros,
            unpriced_amount = rt.unpriced_amount + excluded.unpriced_amount,
            events = rt.events + excluded.events;
    END IF;

    UPDATE usage_counters AS uc SET used = x.u, reserved = x.h, drawn = x.d
      FROM unnest(c_resource, c_period, c_used, c_reserved, c_drawn)
           AS x(r, p, u, h, d)
     WHERE uc.organization_id = p_organization AND uc.resource = x.r
       AND uc.period_start = x.p
       AND (uc.used, uc.reserved, uc.drawn) IS DISTINCT FROM (x.u, x.h, x.d);

    FOR l IN 1 .. cardinality(l_resource) LOOP
        IF a_changed[l] THEN
            UPDATE usage_allowances AS ua SET remaining = a_known[l], updated_at = p_now
             WHERE ua.organization_id = p_organization AND ua.resource = l_resource[l];
        END IF;
    END LOOP;

    -- Percents of the spend cap crossed by the group, on the overage past the limit and
    -- the extra allowance: the counter before and after, keyed by the period.
    FOR c IN 1 .. cardinality(c_resource) LOOP
        CONTINUE WHEN NOT c_touched[c];
        l := array_position(l_resource, c_resource[c]);
        lim := l_limit[l];
        CONTINUE WHEN lim IS NULL OR lim = 0 OR l_cap[l] IS NULL OR l_cap[l] = 0;
        spent0 := greatest(c_used0[c] - lim - c_drawn0[c], 0);
        spent := greatest(c_used[c] - lim - c_drawn[c], 0);
        FOREACH t IN ARRAY ARRAY[80, 100] LOOP
            IF spent0::numeric * 100 < t::numeric * l_cap[l]
               AND t::numeric * l_cap[l] <= spent::numeric * 100 THEN
                al_resource := al_resource || c_resource[c];
                al_start := al_start || c_period[c];
                al_kind := al_kind || 'spend_cap'::text;
                al_threshold := al_threshold || t;
                al_used := al_used || spent;
                al_limit := al_limit || l_cap[l];
                al_owner := al_owner || c_last[c];
            END IF;
        END LOOP;
    END LOOP;

    -- The alerts recorded for the first time under their key, with the event that crossed.
    IF cardinality(al_resource) > 0 THEN
        WITH recorded AS (
            INSERT INTO usage_alerts AS ua (organization_id, resource, period_start, kind,
                                            threshold, used, limit_value, crossed_at)
            SELECT p_organization, a.r, a.s, a.k, a.t, a.u, a.l, p_now
              FROM unnest(al_resource, al_start, al_kind, al_threshold, al_used, al_limit)
                   WITH ORDINALITY AS a(r, s, k, t, u, l, i)
             ORDER BY a.i
            ON CONFLICT DO NOTHING
            RETURNING ua.resource, ua.period_start, ua.kind, ua.threshold
        )
        SELECT array_agg(a.i ORDER BY a.i) INTO al_recorded
          FROM (SELECT DISTINCT ON (a.r, a.s, a.k, a.t) a.r, a.s, a.k, a.t, a.o, a.i
                  FROM unnest(al_resource, al_start, al_kind, al_threshold, al_owner)
                       WITH ORDINALITY AS a(r, s, k, t, o, i)
                 ORDER BY a.r, a.s, a.k, a.t, a.i) AS a
          JOIN recorded AS rec
            ON rec.resource = a.r AND rec.period_start = a.s AND rec.kind = a.k
           AND rec.threshold = a.t;
    END IF;

    RETURN QUERY
        SELECT u.ord::integer, u.st, u.r, u.a, u.used, u.lim, u.h, u.x
          FROM unnest(o_status, o_resource, o_amount, o_used, o_limit, o_reserved, o_extra)
               WITH ORDINALITY AS u(st, r, a, used, lim, h, x, ord)
        UNION ALL
        SELECT NULL, 'alert:' || al_kind[r.i], al_resource[r.i], al_threshold[r.i]::bigint,
               al_owner[r.i]::bigint, NULL, NULL, NULL
          FROM unnest(coalesce(al_recorded, '{}')) AS r(i);
END
$fn$;
