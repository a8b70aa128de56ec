-- One append in one statement: the store calls this as a single autocommit
-- statement instead of BEGIN, lock, check, write, COMMIT round trips.
--
-- The caller (src/store/postgres.rs) sends the request as parallel arrays,
-- with the hash chain already computed from the head it assumes each stream
-- has (`p_assumed_version`, `p_assumed_hash`). The function
--   1. takes the advisory lock of every stream (sorted by the caller) before
--      any write, so the transaction id that orders the global log is handed
--      out only after the writers of the same streams have committed;
--   2. stores the idempotency key (a used key answers 'duplicate' with the
--      stored outcome, having written nothing);
--   3. locks the existing heads and checks the expected versions
--      (SQLSTATE SD409 = conflict, message {"stream", "actual"});
--   4. checks the assumed heads of the streams it writes; if any differ it
--      raises SD412 with the real heads ([[stream, version, hash], ...]) so
--      the caller recomputes the chain and calls again;
--   5. applies the claims (SD423 = claim taken, message {"scope","key","holder"});
--   6. inserts the events, moves the heads and answers 'committed' with the
--      event ids, positions and commit ids.
-- Raising aborts the statement and with it the implicit transaction.

CREATE FUNCTION scaidrive_append(
    p_streams          TEXT[],
    p_expected         TEXT[],      -- 'none' | 'exact' | 'any'
    p_expected_version BIGINT[],
    p_assumed_version  BIGINT[],    -- head the hashes build on; 0 = no stream
    p_assumed_hash     TEXT[],
    p_new_version      BIGINT[],    -- head after the append (= assumed: no events)
    p_new_hash         TEXT[],
    p_tenant           TEXT[],      -- tenant of a new stream's head
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
    c_op               TEXT[],      -- 'claim' | 'release'
    c_scope            TEXT[],
    c_key              TEXT[],
    c_owner            TEXT[],
    p_idem_key         TEXT,
    p_idem_outcome     JSONB
) RETURNS TABLE (o_status TEXT, o_outcome JSONB, o_ids UUID[], o_positions BIGINT[], o_commits BIGINT[])
LANGUAGE plpgsql AS $$
DECLARE
    v_stream  TEXT;
    v_version BIGINT;
    v_hash    TEXT;
    v_actual  BIGINT;
    v_holder  TEXT;
    v_exists  BOOLEAN;
    v_stale   JSONB := '[]'::jsonb;
    i         INT;
BEGIN
    FOREACH v_stream IN ARRAY coalesce(p_streams, '{}') LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(v_stream, 0));
    END LOOP;

    IF p_idem_key IS NOT NULL THEN
        INSERT INTO idempotency (key, outcome, created_at)
        VALUES (p_idem_key, p_idem_outcome, p_now)
        ON CONFLICT (key) DO NOTHING;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'duplicate'::text,
                (SELECT outcome FROM idempotency WHERE key = p_idem_key),
                NULL::uuid[], NULL::bigint[], NULL::bigint[];
            RETURN;
        END IF;
    END IF;

    FOR i IN 1 .. coalesce(array_length(p_streams, 1), 0) LOOP
        SELECT version, last_hash INTO v_version, v_hash
        FROM streams WHERE stream_id = p_streams[i] FOR UPDATE;
        v_exists := FOUND;
        IF NOT v_exists THEN
            v_version := 0;
            v_hash := '';
        END IF;
        v_actual := CASE WHEN v_version > 0 THEN v_version END;
        IF (p_expected[i] = 'none' AND v_actual IS NOT NULL)
           OR (p_expected[i] = 'exact' AND v_actual IS DISTINCT FROM p_expected_version[i]) THEN
            RAISE EXCEPTION USING ERRCODE = 'SD409',
                MESSAGE = jsonb_build_object('stream', p_streams[i], 'actual', v_actual)::text;
        END IF;
        IF p_new_version[i] <> p_assumed_version[i] THEN
            IF v_version <> p_assumed_version[i] OR v_hash <> p_assumed_hash[i] THEN
                v_stale := v_stale || jsonb_build_array(jsonb_build_array(p_streams[i], v_version, v_hash));
            ELSIF v_exists THEN
                UPDATE streams SET version = p_new_version[i], last_hash = p_new_hash[i]
                WHERE stream_id = p_streams[i];
            ELSE
                INSERT INTO streams (stream_id, version, last_hash, tenant_id)
                VALUES (p_streams[i], p_new_version[i], p_new_hash[i], p_tenant[i]);
            END IF;
        END IF;
    END LOOP;
    IF v_stale <> '[]'::jsonb THEN
        RAISE EXCEPTION USING ERRCODE = 'SD412', MESSAGE = v_stale::text;
    END IF;

    FOR i IN 1 .. coalesce(array_length(c_op, 1), 0) LOOP
        IF c_op[i] = 'claim' THEN
            INSERT INTO claims (scope, key, owner, claimed_at)
            VALUES (c_scope[i], c_key[i], c_owner[i], p_now)
            ON CONFLICT (scope, key) DO NOTHING;
            IF NOT FOUND THEN
                SELECT owner INTO v_holder FROM claims WHERE scope = c_scope[i] AND key = c_key[i];
                IF NOT FOUND THEN
                    -- released between the insert and the select: decide again
                    RAISE EXCEPTION USING ERRCODE = 'SD409',
                        MESSAGE = jsonb_build_object('stream', '', 'actual', NULL)::text;
                ELSIF v_holder <> c_owner[i] THEN
                    RAISE EXCEPTION USING ERRCODE = 'SD423',
                        MESSAGE = jsonb_build_object('scope', c_scope[i], 'key', c_key[i], 'holder', v_holder)::text;
                END IF;
            END IF;
        ELSE
            DELETE FROM claims WHERE scope = c_scope[i] AND key = c_key[i] AND owner = c_owner[i];
        END IF;
    END LOOP;

    RETURN QUERY
    WITH ins AS (
        INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,
                            tenant_id, data, metadata, recorded_at, hash)
        SELECT s, v, id, t, sv, tn, d, m, p_now, h
        FROM UNNEST(e_stream, e_version, e_id, e_type, e_schema, e_tenant, e_data, e_meta, e_hash)
             AS x(s, v, id, t, sv, tn, d, m, h)
        RETURNING event_id AS id, position AS pos, transaction_id::text::bigint AS commit_id
    )
    SELECT 'committed'::text, NULL::jsonb, array_agg(ins.id), array_agg(ins.pos), array_agg(ins.commit_id)
    FROM ins;
END;
$$;
