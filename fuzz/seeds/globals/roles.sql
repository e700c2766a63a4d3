--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

CREATE ROLE "www-data";
ALTER ROLE "www-data" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2Vydg==';
CREATE ROLE "odd ""name"" ☃";
ALTER ROLE "odd ""name"" ☃" WITH NOLOGIN VALID UNTIL 'infinity';
COMMENT ON ROLE "www-data" IS 'app role; it''s $$quoted$$';
GRANT "www-data" TO postgres WITH INHERIT TRUE GRANTED BY postgres;
ALTER ROLE "www-data" SET search_path TO 'public', '$user';
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/pg fast';
