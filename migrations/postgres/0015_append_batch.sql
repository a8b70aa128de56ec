-- Group commit, fast path: a group of appends written with a few set-based
-- statements, instead of a subtransaction and a nested `scaidrive_append`
-- call per append (0014).
--
-- The committer (src/store/postgres/group.rs) calls it for a group in which
-- no idempotency key and no claim key appears twice, with the arrays of
-- `scaidrive_append_group` (NULL idempotency and claim arrays when the group
-- has none) and how many of the group's streams exist and move (`n_move`:
-- assumed head > 0, new head beyond it), are created (`n_new`: assumed head
-- 0) and are only checked (`n_check`: no events, an expectation other than
-- 'any'), and how many claims it makes (`n_claim`). The function
--   1. takes the advisory lock of every stream and key, in the caller's
--      sorted order, as 0014 does. Every writer of a stream head takes that
--      lock first, so the heads read next stay as read until this
--      transaction ends and need no row lock;
--   2. moves the existing heads whose version and hash are the assumed ones
--      and whose expectation holds, creates the new heads, checks the
--      checked ones, stores the idempotency keys, drops the released claims
--      and inserts the new ones; if any of these falls short of its count (a
--      conflict, a stale head, a used key, a claim already held, even by the
--      same owner: something to answer append by append) it raises SD4GR
--      and nothing is written: the caller then sends the same group to
--      `scaidrive_append_group`;
--   3. inserts every event and answers their ids, positions and commit ids
--      in the order given; the caller cuts them into each append's share.
-- Appends in a group never share a stream (the committer sees to it).

CREATE FUNCTION scaidrive_append_batch(
    g_streams          TEXT[],
    r_idem_key         TEXT[],
    r_idem_outcome     JSONB[],
    p_streams          TEXT[],
    p_expected         TEXT[],
    p_expected_version BIGINT[],
    p_assumed_version  BIGINT[],
    p_assumed_hash     TEXT[],
    p_new_version      BIGINT[],
    p_new_hash         TEXT[],
    p_tenant           TEXT[],
    e_stream           TEXT[],
    e_version          BIGINT[],
    e_id               UUID[],
    e_type             TEXT[],
    e_schema           INT[],
    e_tenant           TEXT[],
    e_data             JSONB[],
    e_meta             JSONB[],
    e_hash             TEXT[],
    p_now              TIMESTAMPTZ,
    c_op               TEXT[],
    c_scope            TEXT[],
    c_key              TEXT[],
    c_owner            TEXT[],
    n_move             INT,
    n_new              INT,
    n_check            INT,
    n_claim            INT
) RETURNS TABLE (o_ids UUID[], o_positions BIGINT[], o_commits BIGINT[])
LANGUAGE plpgsql AS $$
DECLARE
    n INT;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(s, 0))
    FROM unnest(g_streams) WITH ORDINALITY AS g(s, i)
    ORDER BY i;

    IF n_move > 0 THEN
        UPDATE streams h SET version = p.nv, last_hash = p.nh
        FROM unnest(p_streams, p_expected, p_expected_version, p_assumed_version,
                    p_assumed_hash, p_new_version, p_new_hash) AS p(s, x, xv, av, ah, nv, nh)
        WHERE h.stream_id = p.s
          AND p.av > 0 AND p.nv <> p.av
          AND h.version = p.av AND h.last_hash = p.ah
          AND (p.x = 'any' OR (p.x = 'exact' AND p.xv = p.av));
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> n_move THEN
            RAISE EXCEPTION USING ERRCODE = 'SD4GR', MESSAGE = 'a head moved';
        END IF;
    END IF;

    IF n_new > 0 THEN
        INSERT INTO streams (stream_id, version, last_hash, tenant_id)
        SELECT p.s, p.nv, p.nh, p.tn
        FROM unnest(p_streams, p_expected, p_assumed_version, p_new_version, p_new_hash, p_tenant)
             AS p(s, x, av, nv, nh, tn)
        WHERE p.av = 0 AND p.nv <> p.av AND p.x <> 'exact'
        ON CONFLICT (stream_id) DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> n_new THEN
            RAISE EXCEPTION USING ERRCODE = 'SD4GR', MESSAGE = 'a stream exists';
        END IF;
    END IF;

    IF n_check > 0 THEN
        SELECT count(*) INTO n
        FROM unnest(p_streams, p_expected, p_expected_version, p_assumed_version, p_new_version)
             AS p(s, x, xv, av, nv)
        LEFT JOIN streams h ON h.stream_id = p.s
        WHERE p.nv = p.av AND p.x <> 'any'
          AND ((p.x = 'none' AND coalesce(h.version, 0) = 0)
               OR (p.x = 'exact' AND h.version > 0 AND h.version = p.xv));
        IF n <> n_check THEN
            RAISE EXCEPTION USING ERRCODE = 'SD4GR', MESSAGE = 'an expectation fails';
        END IF;
    END IF;

    IF r_idem_key IS NOT NULL THEN
        INSERT INTO idempotency (key, outcome, created_at)
        SELECT k, o, p_now FROM unnest(r_idem_key, r_idem_outcome) AS u(k, o)
        WHERE k IS NOT NULL
        ON CONFLICT (key) DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n <> (SELECT count(k) FROM unnest(r_idem_key) AS k) THEN
            RAISE EXCEPTION USING ERRCODE = 'SD4GR', MESSAGE = 'a key is used';
        END IF;
    END IF;

    IF c_op IS NOT NULL THEN
        DELETE FROM claims c
        USING unnest(c_op, c_scope, c_key, c_owner) AS u(op, s, k, o)
        WHERE u.op = 'release' AND c.scope = u.s AND c.key = u.k AND c.owner = u.o;
        IF n_claim > 0 THEN
            INSERT INTO claims (scope, key, owner, claimed_at)
            SELECT u.s, u.k, u.o, p_now
            FROM unnest(c_op, c_scope, c_key, c_owner) AS u(op, s, k, o)
            WHERE u.op = 'claim'
            ON CONFLICT (scope, key) DO NOTHING;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n <> n_claim THEN
                RAISE EXCEPTION USING ERRCODE = 'SD4GR', MESSAGE = 'a claim is held';
            END IF;
        END IF;
    END IF;

    RETURN QUERY
    WITH ins AS (
        INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                            tenant_id, data, metadata, recorded_at, hash)
        SELECT x.s, x.v, x.id, x.t, x.sv, x.tn, x.d, x.m, p_now, x.h
        FROM unnest(e_stream, e_version, e_id, e_type, e_schema, e_tenant, e_data, e_meta, e_hash)
             WITH ORDINALITY AS x(s, v, id, t, sv, tn, d, m, h, j)
        ORDER BY x.j
        RETURNING event_id, position, transaction_id::text::bigint AS commit_id
    )
    SELECT array_agg(event_id ORDER BY position), array_agg(position ORDER BY position),
           array_agg(commit_id ORDER BY position)
    FROM ins;
END;
$$;
