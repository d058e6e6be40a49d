DROP TABLE audit_events;
DROP TABLE exceptions;
DROP TABLE alerts;
