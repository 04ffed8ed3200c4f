// The Data Export Service replacement in one resource group: a Python function app on Flex
// Consumption with a user-assigned identity, its storage (runtime + encrypted data containers),
// Service Bus, Key Vault (the key that wraps blob keys, profile secrets), Azure SQL (admin store:
// profiles, cursors, metrics), Event Grid for the retry blob trigger, Log Analytics + App Insights.
// `azd up` deploys it (azure.yaml); so does `az deployment group create` (docs/deploy.md).
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the environment: feeds the unique suffix of every resource name and the azd-env-name tag.')
param environmentName string

@minLength(1)
@description('Region of every resource (one where Flex Consumption is offered).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string = resourceGroup().location

@minLength(1)
@description('Object id of the person, group or pipeline deploying: the Azure SQL Entra admin (runs the post-deploy SQL). azd sets it (AZURE_PRINCIPAL_ID); with az: az ad signed-in-user show --query id -o tsv.')
param principalId string

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('What principalId is.')
param principalType string = 'User'

@description('Display name (UPN or group/app name) of principalId, shown as the Azure SQL Entra admin login. Defaults to the object id.')
param sqlAdminLogin string = ''

@allowed([
  'Standard'
  'Premium'
])
@description('Service Bus tier: Standard allows messages up to 256 KB; Premium up to 100 MB (larger batches, fewer claim checks).')
param serviceBusSku string = 'Standard'

@minValue(1)
@maxValue(16)
@description('Messaging units when serviceBusSku is Premium.')
param serviceBusPremiumCapacity int = 1

@minValue(1)
@maxValue(100)
@description('How many times Service Bus delivers a notification message before dead-lettering it.')
param maxDeliveryCount int = 10

@allowed([
  'function-keys'
  'entra'
])
@description('Admin API access: function keys checked by the Functions host, or an Entra app role through App Service authentication (configured after deployment, docs/deploy.md).')
param authMode string = 'function-keys'

@description('authMode entra: application (client) id of the app registration that protects the admin API (docs/deploy.md). App Service authentication is configured only when it is set.')
param entraClientId string = ''

@description('Entra app role the admin API requires when authMode is entra.')
param adminRole string = 'DES.Admin'

@description('Azure SQL database SKU of the admin store.')
param sqlDatabaseSku object = {
  name: 'GP_S_Gen5_1'
  tier: 'GeneralPurpose'
}

@allowed([
  2048
  4096
])
@description('Memory of each Flex Consumption instance (MB).')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Most Flex Consumption instances the app scales to.')
param maximumInstanceCount int = 100

@description('Optional: resource id of an existing subnet (delegated to Microsoft.App/environments) for the app\'s outbound VNet integration. Empty: no VNet.')
param appSubnetId string = ''

@minValue(30)
@maxValue(730)
@description('Days Log Analytics keeps logs.')
param logRetentionDays int = 30

@description('Days the failure log, parked failures and unprocessable messages are kept.')
param keptBlobDays int = 30

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}des-${resourceToken}'
var deploymentContainerName = 'app-package-${take(resourceToken, 12)}'
var notificationsQueueName = 'des-notifications'
var blobKeyName = 'des-blob-kek'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: '${abbrs.managedIdentityUserAssignedIdentities}des-${resourceToken}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}des-${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}des-${resourceToken}'
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: '${abbrs.storageStorageAccounts}des${resourceToken}'
    deploymentContainerName: deploymentContainerName
    keptBlobDays: keptBlobDays
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    systemTopicName: '${abbrs.eventGridSystemTopics}des-${resourceToken}'
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  params: {
    location: location
    tags: tags
    name: '${abbrs.serviceBusNamespaces}des-${resourceToken}'
    sku: serviceBusSku
    premiumCapacity: serviceBusPremiumCapacity
    queueName: notificationsQueueName
    maxDeliveryCount: maxDeliveryCount
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    tags: tags
    name: '${abbrs.keyVaultVaults}des-${take(resourceToken, 13)}'
    keyName: blobKeyName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module sql 'modules/sql.bicep' = {
  name: 'sql'
  params: {
    location: location
    tags: tags
    serverName: '${abbrs.sqlServers}des-${resourceToken}'
    databaseName: '${abbrs.sqlServersDatabases}des-admin'
    databaseSku: sqlDatabaseSku
    adminPrincipalId: principalId
    adminLogin: empty(sqlAdminLogin) ? principalId : sqlAdminLogin
    adminPrincipalType: principalType == 'ServicePrincipal' ? 'Application' : principalType
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    tags: tags
    name: functionAppName
    planName: '${abbrs.webServerFarms}des-${resourceToken}'
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    serviceBusNamespaceName: serviceBus.outputs.name
    serviceBusSku: serviceBusSku
    queueName: notificationsQueueName
    blobKeyUri: keyVault.outputs.keyUri
    sqlServerFqdn: sql.outputs.serverFqdn
    sqlDatabaseName: sql.outputs.databaseName
    authMode: authMode
    entraClientId: entraClientId
    adminRole: adminRole
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSubnetId: appSubnetId
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    identityPrincipalId: identity.properties.principalId
    storageAccountName: storage.outputs.name
    serviceBusNamespaceName: serviceBus.outputs.name
    keyVaultName: keyVault.outputs.name
    keyName: blobKeyName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output DES_API_URL string = functionApp.outputs.uri
output AZURE_MANAGED_IDENTITY_NAME string = identity.name
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_EVENTGRID_SYSTEM_TOPIC_NAME string = storage.outputs.systemTopicName
output AZURE_SERVICEBUS_NAMESPACE string = serviceBus.outputs.name
output AZURE_SERVICEBUS_FQDN string = serviceBus.outputs.fqdn
output AZURE_SERVICEBUS_QUEUE_NAME string = notificationsQueueName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_URI string = keyVault.outputs.uri
output DES_BLOB_KEY string = keyVault.outputs.keyUri
output AZURE_SQL_SERVER_NAME string = sql.outputs.serverName
output AZURE_SQL_SERVER_FQDN string = sql.outputs.serverFqdn
output AZURE_SQL_DATABASE_NAME string = sql.outputs.databaseName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.applicationInsightsConnectionString
output AZURE_LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.logAnalyticsWorkspaceId
