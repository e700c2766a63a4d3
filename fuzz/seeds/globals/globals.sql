--
-- PostgreSQL database cluster dump
--

\restrict bghk2uSccO2mL7o4LdlNckpDVBI8h1LTM2jasq6O1FvjPJfz1Gt8gcp6xMGg57I

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;
CREATE ROLE root;
ALTER ROLE root WITH SUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;

--
-- User Configurations
--








\unrestrict bghk2uSccO2mL7o4LdlNckpDVBI8h1LTM2jasq6O1FvjPJfz1Gt8gcp6xMGg57I

--
-- PostgreSQL database cluster dump complete
--

