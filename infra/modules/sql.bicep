// Azure SQL: the admin store (profiles, cursors, metrics: shared/store, migrations applied by the
// post-deploy step). Entra-only authentication, TLS 1.2; the deployer's principal is the Entra admin
// and creates the function identity's database user (scripts/postdeploy.sql).
param location string
param tags object
param serverName string
param databaseName string
param databaseSku object
param adminPrincipalId string
param adminLogin string
@allowed([
  'User'
  'Group'
  'Application'
])
param adminPrincipalType string
param logAnalyticsWorkspaceId string

@description('Addresses that receive Microsoft Defender for SQL alerts (besides the subscription admins).')
param securityAlertEmails array = []

var serverless = contains(string(databaseSku.name), '_S_')

resource server 'Microsoft.Sql/servers@2023-08-01' = {
  //checkov:skip=CKV_AZURE_113:Public network access stays on (with the Azure-services rule) because Flex Consumption without VNet integration connects from Azure's shared outbound addresses; logins are Entra-only.
  //checkov:skip=CKV2_AZURE_45:Private endpoints need a VNet this template does not create (optional VNet parameters only).
  //checkov:skip=CKV2_AZURE_27:Entra authentication is configured, and exclusively (azureADOnlyAuthentication), through the administrators property below.
  name: serverName
  location: location
  tags: tags
  properties: {
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: adminLogin
      sid: adminPrincipalId
      principalType: adminPrincipalType
      tenantId: subscription().tenantId
    }
  }
}

// 0.0.0.0 - 0.0.0.0 is Azure's "allow Azure services" rule: the function app's outbound addresses.
resource allowAzure 'Microsoft.Sql/servers/firewallRules@2023-08-01' = {
  //checkov:skip=CKV_AZURE_11:This is the documented allow-Azure-services rule (start and end 0.0.0.0), not an open internet range; authentication is Entra-only.
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource database 'Microsoft.Sql/servers/databases@2023-08-01' = {
  //checkov:skip=CKV_AZURE_26:The extra addresses are a parameter (securityAlertEmails, empty by default); emailAccountAdmins already sends every alert to the subscription's admins.
  //checkov:skip=CKV_AZURE_27:emailAccountAdmins is true in this database's securityAlertPolicies child below (the check reads only nested resources).
  //checkov:skip=CKV_AZURE_229:A zone-redundant database is a cost choice left to the operator (databaseSku); the admin store is small and recoverable from point-in-time backups.
  parent: server
  name: databaseName
  location: location
  tags: tags
  sku: databaseSku
  properties: {
    collation: 'SQL_Latin1_General_CP1_CI_AS'
    // Serverless: pauses after an idle hour (no batches, no API calls); the first call after a
    // pause waits for the resume (a transient error the retry path covers).
    autoPauseDelay: serverless ? 60 : null
    minCapacity: serverless ? json('0.5') : null
    zoneRedundant: false
  }
}

resource securityAlerts 'Microsoft.Sql/servers/securityAlertPolicies@2023-08-01' = {
  //checkov:skip=CKV_AZURE_26:The extra addresses are a parameter (securityAlertEmails, empty by default); emailAccountAdmins already sends every alert to the subscription's admins.
  parent: server
  name: 'Default'
  properties: {
    state: 'Enabled'
    disabledAlerts: []
    emailAccountAdmins: true
    emailAddresses: securityAlertEmails
    retentionDays: 90
  }
}

resource auditing 'Microsoft.Sql/servers/auditingSettings@2023-08-01' = {
  parent: server
  name: 'default'
  properties: {
    state: 'Enabled'
    isAzureMonitorTargetEnabled: true
    retentionDays: 90
  }
}

// The admin database audits to Azure Monitor too; its diagnostic setting (allLogs, which includes
// SQLSecurityAuditEvents) delivers the events to Log Analytics.
resource databaseAuditing 'Microsoft.Sql/servers/databases/auditingSettings@2023-08-01' = {
  parent: database
  name: 'default'
  properties: {
    state: 'Enabled'
    isAzureMonitorTargetEnabled: true
    retentionDays: 90
  }
}

resource databaseSecurityAlerts 'Microsoft.Sql/servers/databases/securityAlertPolicies@2023-08-01' = {
  //checkov:skip=CKV_AZURE_26:The extra addresses are a parameter (securityAlertEmails, empty by default); emailAccountAdmins already sends every alert to the subscription's admins.
  parent: database
  name: 'Default'
  properties: {
    state: 'Enabled'
    disabledAlerts: []
    emailAccountAdmins: true
    emailAddresses: securityAlertEmails
    retentionDays: 90
  }
}

resource databaseDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: database
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'Basic'
        enabled: true
      }
    ]
  }
}

output serverName string = server.name
output serverFqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
