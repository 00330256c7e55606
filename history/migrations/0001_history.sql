-- The call history (crate `history`). Portable SQL: the same file runs on SQLite and PostgreSQL.
-- A call's row is filled by parts that may arrive in any order from several nodes (the queue's
-- facts at its end and at its wrap-up's end, the disposition, the citizen's rating), so every
-- column but the key may be NULL until its part arrives. Times are ms since the epoch; `day` is
-- the tenant-local day the call was asked on (YYYY-MM-DD).
CREATE TABLE history_calls (
    call_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    day TEXT,
    kiosk_id TEXT,
    service TEXT,
    language TEXT,
    operator_id TEXT,
    operators TEXT,
    outcome TEXT,
    requested_at BIGINT,
    offered_at BIGINT,
    answered_at BIGINT,
    accepted_at BIGINT,
    ended_at BIGINT,
    held_ms BIGINT,
    holds BIGINT,
    transfers BIGINT,
    wait_ms BIGINT,
    sl_threshold_ms BIGINT,
    short_abandon BIGINT,
    wrapup_at BIGINT,
    handle_ms BIGINT,
    disposition TEXT,
    notes TEXT,
    rating BIGINT,
    comment TEXT,
    rated_at BIGINT
);
CREATE INDEX history_calls_by_day ON history_calls (tenant, day);

-- Every certificate issued, on every channel (kiosk, web, intermediary, cli).
CREATE TABLE history_certificates (
    document_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    call_id TEXT,
    day TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    fee TEXT NOT NULL,
    exemption TEXT,
    kiosk_id TEXT,
    operator_id TEXT
);
CREATE INDEX history_certificates_by_day ON history_certificates (tenant, day);
CREATE INDEX history_certificates_by_call ON history_certificates (call_id);

-- Every print job sent to a kiosk's printer, with how it ended.
CREATE TABLE history_prints (
    job_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    document_id TEXT,
    call_id TEXT,
    kiosk_id TEXT,
    day TEXT NOT NULL,
    at BIGINT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX history_prints_by_call ON history_prints (call_id);
