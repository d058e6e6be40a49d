DROP TABLE drift_events;
DROP TABLE posture_snapshots;
DROP TABLE host_rule_state;
DROP TABLE scan_findings;
DROP TABLE scans;
