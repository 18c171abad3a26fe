-- An email whose SMTP server could not be reached (as opposed to one it refused) is
-- recorded as `failed` with the transport's error, so the tenant shows it instead of
-- `pending` for ever; a later successful send overwrites it with `sent`.
ALTER TABLE email_deliveries DROP CONSTRAINT email_deliveries_status_check;
ALTER TABLE email_deliveries
    ADD CONSTRAINT email_deliveries_status_check CHECK (status IN ('sent', 'refused', 'failed'));

-- A plan cannot allow a negative number of tenants.
ALTER TABLE plans ADD CONSTRAINT plans_max_tenants_per_org_check CHECK (max_tenants_per_org >= 0);
