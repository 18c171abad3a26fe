-- Tenant login roles live in the same PostgreSQL cluster: they must not even connect to
-- the control-plane database. The platform connects as its own (owner) role.
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$$;
