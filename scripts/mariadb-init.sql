-- Accounts and schema every test/cluster MariaDB instance starts with.
-- Run by `mariadb-install-db --extra-file` while the template datadir is created, so primaries
-- and replicas (copies of that template) hold identical users without writing any binlog event.
-- Shared by scripts/cluster.sh and the test harness (tests/harness/mod.rs), both by path.
-- Bootstrap mode runs with grant tables off; FLUSH PRIVILEGES turns them on for CREATE USER.
FLUSH PRIVILEGES;
CREATE USER 'app'@'%' IDENTIFIED BY 'app';
GRANT ALL ON *.* TO 'app'@'%' WITH GRANT OPTION;
CREATE USER 'app'@'localhost' IDENTIFIED BY 'app';
GRANT ALL ON *.* TO 'app'@'localhost' WITH GRANT OPTION;
CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'app';
GRANT ALL ON *.* TO 'app'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER 'repl'@'%' IDENTIFIED BY 'repl';
GRANT REPLICATION SLAVE, REPLICATION SLAVE ADMIN, BINLOG MONITOR ON *.* TO 'repl'@'%';
CREATE DATABASE fund;
