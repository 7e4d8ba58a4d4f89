-- Login and registration limits shared by every node (issue 11, item 5; src/auth/limits.rs).
-- One row per (scope, key): a fixed window of `hits` that ends at `window_ends` (the
-- database's clock), and for an account under attack a back-off until `blocked_until`.
-- `key` is SHA-256 of the email and/or client address, never the values themselves.
CREATE TABLE auth_limits (
    scope         TEXT NOT NULL CHECK (scope IN
                      ('login_address', 'login_pair', 'login_account', 'login_known', 'register_address')),
    key           BYTEA NOT NULL,
    hits          INTEGER NOT NULL,
    window_ends   TIMESTAMPTZ NOT NULL,
    blocked_until TIMESTAMPTZ,
    PRIMARY KEY (scope, key)
);
