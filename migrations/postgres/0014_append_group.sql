-- Group commit: several independent appends in one transaction.
--
-- The store's committer (src/store/postgres/group.rs) sends the appends that
-- queued up while the previous group was being written, as the parallel
-- arrays of `scaidrive_append` concatenated request after request, with the
-- (1-based, inclusive) end of each request's slice in `r_*_end`.
-- The function
--   1. takes an advisory lock for every stream, claim key and idempotency
--      key of every request up front, in the sorted order the caller gives
--      (`g_streams`), so two groups, or a group and a single append, never
--      deadlock;
--   2. runs `scaidrive_append` for each request in a block of its own (a
--      subtransaction): a request that raises (conflict, stale head, claim
--      taken, ...) is undone alone and answered with its SQLSTATE and
--      message, the others go on;
--   3. answers one row per request, in order.
-- Everything commits together, so the events of a group share one
-- transaction id (the commit id of their log positions).

CREATE FUNCTION scaidrive_append_group(
    g_streams          TEXT[],
    r_stream_end       INT[],
    r_event_end        INT[],
    r_claim_end        INT[],
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
    c_owner            TEXT[]
) RETURNS TABLE (g_request INT, g_status TEXT, g_outcome JSONB, g_ids UUID[], g_positions BIGINT[],
                 g_commits BIGINT[], g_code TEXT, g_message TEXT, g_constraint TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    v_stream TEXT;
    r        INT;
    ps       INT := 1;
    es       INT := 1;
    cs       INT := 1;
    pe       INT;
    ee       INT;
    ce       INT;
    res      RECORD;
BEGIN
    FOREACH v_stream IN ARRAY coalesce(g_streams, '{}') LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended(v_stream, 0));
    END LOOP;

    FOR r IN 1 .. coalesce(array_length(r_stream_end, 1), 0) LOOP
        pe := r_stream_end[r];
        ee := r_event_end[r];
        ce := r_claim_end[r];
        g_request := r;
        BEGIN
            SELECT * INTO res FROM scaidrive_append(
                p_streams[ps:pe], p_expected[ps:pe], p_expected_version[ps:pe],
                p_assumed_version[ps:pe], p_assumed_hash[ps:pe], p_new_version[ps:pe],
                p_new_hash[ps:pe], p_tenant[ps:pe],
                e_stream[es:ee], e_version[es:ee], e_id[es:ee], e_type[es:ee], e_schema[es:ee],
                e_tenant[es:ee], e_data[es:ee], e_meta[es:ee], e_hash[es:ee],
                p_now,
                c_op[cs:ce], c_scope[cs:ce], c_key[cs:ce], c_owner[cs:ce],
                r_idem_key[r], r_idem_outcome[r]);
            g_status := res.o_status;
            g_outcome := res.o_outcome;
            g_ids := res.o_ids;
            g_positions := res.o_positions;
            g_commits := res.o_commits;
            g_code := NULL;
            g_message := NULL;
            g_constraint := NULL;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS g_code = RETURNED_SQLSTATE,
                                    g_message = MESSAGE_TEXT,
                                    g_constraint = CONSTRAINT_NAME;
            g_status := 'error';
            g_outcome := NULL;
            g_ids := NULL;
            g_positions := NULL;
            g_commits := NULL;
        END;
        RETURN NEXT;
        ps := pe + 1;
        es := ee + 1;
        cs := ce + 1;
    END LOOP;
END;
$$;
