-- Run by scripts/postdeploy_db.py as the Azure SQL Entra admin, in the admin store database, after
-- every deployment (idempotent). {identity} is the function app's user-assigned identity, quoted as
-- an identifier; {identity_literal} the same name as a string literal.
--
-- The identity becomes a contained database user (Entra, FROM EXTERNAL PROVIDER) that reads and
-- writes the store's tables, and may create and alter them: the store applies its own pending
-- migrations on start, under an application lock (shared/store/migrations.py), so a deployment
-- that adds a migration works even before this step has run. No server-level rights, no other
-- database.
IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = {identity_literal})
    CREATE USER {identity} FROM EXTERNAL PROVIDER;
ALTER ROLE db_datareader ADD MEMBER {identity};
ALTER ROLE db_datawriter ADD MEMBER {identity};
ALTER ROLE db_ddladmin ADD MEMBER {identity};
