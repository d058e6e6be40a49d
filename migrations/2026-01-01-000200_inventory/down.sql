DROP TABLE ssh_known_hosts;
DROP TABLE credentials;
DROP TABLE host_group_members;
DROP TABLE host_groups;
DROP TABLE hosts;
