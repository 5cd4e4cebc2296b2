-- postwerk: the vmail schema of the guide, for MySQL / MariaDB.
--
-- These are the four tables of the guide exactly as the guide creates them
-- (shared/guide/schema-mysql.sql), with IF NOT EXISTS so that running
-- `postwerk db init` twice, or on a database made by following the guide,
-- changes nothing.
--
-- The guide also creates the database and a read-only user for Postfix and
-- Dovecot. postwerk does not do that for you. As the MariaDB root user, run:
--
--   create database vmail CHARACTER SET 'utf8'
--   grant select on vmail.* to 'vmail'@'localhost' identified by 'vmaildbpass'
--
-- (each statement ends with a semicolon, not shown here). Postfix and Dovecot
-- only ever read these tables. The postwerk admin command writes them and
-- needs a user with insert, update and delete rights.
CREATE TABLE IF NOT EXISTS `domains` (
    `id` int unsigned NOT NULL AUTO_INCREMENT,
    `domain` varchar(255) NOT NULL,
    PRIMARY KEY (`id`),
    UNIQUE KEY (`domain`)
);
CREATE TABLE IF NOT EXISTS `accounts` (
    `id` int unsigned NOT NULL AUTO_INCREMENT,
    `username` varchar(64) NOT NULL,
    `domain` varchar(255) NOT NULL,
    `password` varchar(255) NOT NULL,
    `quota` int unsigned DEFAULT '0',
    `enabled` boolean DEFAULT '0',
    `sendonly` boolean DEFAULT '0',
    PRIMARY KEY (id),
    UNIQUE KEY (`username`, `domain`),
    FOREIGN KEY (`domain`) REFERENCES `domains` (`domain`)
);
CREATE TABLE IF NOT EXISTS `aliases` (
    `id` int unsigned NOT NULL AUTO_INCREMENT,
    `source_username` varchar(64),
    `source_domain` varchar(255) NOT NULL,
    `destination_username` varchar(64) NOT NULL,
    `destination_domain` varchar(255) NOT NULL,
    `enabled` boolean DEFAULT '0',
    PRIMARY KEY (`id`),
    UNIQUE KEY (`source_username`, `source_domain`, `destination_username`, `destination_domain`),
    FOREIGN KEY (`source_domain`) REFERENCES `domains` (`domain`)
);
CREATE TABLE IF NOT EXISTS `tlspolicies` (
    `id` int unsigned NOT NULL AUTO_INCREMENT,
    `domain` varchar(255) NOT NULL,
    `policy` enum('none', 'may', 'encrypt', 'dane', 'dane-only', 'fingerprint', 'verify', 'secure') NOT NULL,
    `params` varchar(255),
    PRIMARY KEY (`id`),
    UNIQUE KEY (`domain`)
);
