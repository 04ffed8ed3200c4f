"""SQL Server and Azure SQL Database destination (pyodbc). See docs/sqlserver.md."""
