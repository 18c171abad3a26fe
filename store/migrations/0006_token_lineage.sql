-- Which token created each token, so revoking a token revokes every token made with it
-- (and with those, down the chain). NULL for tokens made by `tenants bootstrap`, directly
-- through the store, or before this column existed: those have no parent to follow.
ALTER TABLE api_tokens
    ADD COLUMN created_by_token uuid REFERENCES api_tokens(id),
    ADD CONSTRAINT api_tokens_not_own_parent CHECK (created_by_token <> id);

-- Revocation walks the lineage from parent to children.
CREATE INDEX api_tokens_created_by_token_idx ON api_tokens (created_by_token)
    WHERE created_by_token IS NOT NULL;
