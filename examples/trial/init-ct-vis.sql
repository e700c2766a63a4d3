-- Stand-in for the database Concertim's playbook creates: the `ct-vis`
-- database owned by `www-data`, with the pgcrypto extension and a few rows,
-- so the trial backs up something shaped like the real thing. The postgres
-- image runs this once, when its data volume is empty.
CREATE ROLE "www-data" LOGIN;
CREATE DATABASE "ct-vis" OWNER "www-data";
\connect "ct-vis"
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE racks (id bigserial PRIMARY KEY, name text NOT NULL, u_height int NOT NULL DEFAULT 42);
CREATE TABLE devices (id bigserial PRIMARY KEY, rack_id bigint REFERENCES racks(id), name text, secret bytea);
INSERT INTO racks (name) SELECT 'rack-' || g FROM generate_series(1, 20) g;
INSERT INTO devices (rack_id, name, secret)
  SELECT 1 + (g % 20), 'node ' || g, gen_random_bytes(16) FROM generate_series(1, 400) g;
ALTER TABLE racks OWNER TO "www-data";
ALTER TABLE devices OWNER TO "www-data";
