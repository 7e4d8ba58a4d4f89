DROP TABLE auth_limits;
