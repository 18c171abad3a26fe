-- Workload sizing per plan: how many connections the tenant's service may keep in its pool,
-- and how many requests it serves at once (it answers 503 to more). The tenant's role also
-- needs one connection for the service's single-copy lock and one for the platform's own
-- writes into the tenant database (realm, invitation, suspended flag), so the pool stays
-- at least two below the role's connection limit. A plan inserted without these columns
-- gets the free tier's sizing.
ALTER TABLE plans
    ADD COLUMN workload_db_pool integer NOT NULL DEFAULT 2,
    ADD COLUMN workload_max_concurrent_requests integer NOT NULL DEFAULT 16;

UPDATE plans SET workload_db_pool = 2, workload_max_concurrent_requests = 16
    WHERE name = 'free';
UPDATE plans SET workload_db_pool = 8, workload_max_concurrent_requests = 64
    WHERE name = 'growth';
UPDATE plans SET workload_db_pool = 24, workload_max_concurrent_requests = 256
    WHERE name = 'enterprise';
-- Plans an operator added keep within their own connection limit.
UPDATE plans SET workload_db_pool = GREATEST(1, LEAST(workload_db_pool, db_connection_limit - 2))
    WHERE name NOT IN ('free', 'growth', 'enterprise');

ALTER TABLE plans
    ADD CONSTRAINT plans_workload_db_pool_fits_connection_limit
        CHECK (workload_db_pool >= 1 AND workload_db_pool + 2 <= db_connection_limit),
    ADD CONSTRAINT plans_workload_max_concurrent_requests_range
        CHECK (workload_max_concurrent_requests BETWEEN 1 AND 100000);
