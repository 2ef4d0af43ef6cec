-- The host name the load balancer routes to the environment (NULL: `<name>.<domain>` from the
-- controller's `[load_balancer]` config). Written only when created and by a CNAME swap,
-- which sets both environments' names in one statement.
ALTER TABLE environments ADD COLUMN cname TEXT;
