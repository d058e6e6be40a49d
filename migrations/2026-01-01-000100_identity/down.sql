DROP TABLE refresh_sessions;
DROP TABLE api_tokens;
DROP TABLE users;
DROP TABLE roles;
DROP FUNCTION openwatch_set_updated_at();
