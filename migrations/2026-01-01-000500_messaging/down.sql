DROP TABLE scheduler_config;
DROP TABLE processed_messages;
DROP TABLE outbox;
