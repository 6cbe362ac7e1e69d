-- A fixture migration for the test kit's own test.
CREATE TABLE testkit_probe (id integer PRIMARY KEY, note text NOT NULL);
INSERT INTO testkit_probe VALUES (1, 'migrated');
