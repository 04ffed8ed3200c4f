// The function app on Flex Consumption (Python 3.11), running as the user-assigned identity for
// everything: the runtime storage (identity-based AzureWebJobsStorage), the deployment package,
// Service Bus, Key Vault, Azure SQL and Application Insights. The app settings below are the ones
// the code reads (tests/unit/test_infra.py checks them name for name against shared/).
param location string
param tags object
param name string
param planName string
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param logAnalyticsWorkspaceId string
param serviceBusNamespaceName string
param serviceBusSku string
param queueName string
param blobKeyUri string
param sqlServerFqdn string
param sqlDatabaseName string
@allowed([
  'function-keys'
  'entra'
])
param authMode string
param adminRole string
param instanceMemoryMB int
param maximumInstanceCount int
param appSubnetId string

@description('authMode entra: application (client) id of the app registration whose tokens the admin API accepts (its app role adminRole). App Service authentication is configured only when set.')
param entraClientId string = ''

@allowed([
  'managed-identity'
  'client-secret'
])
@description('How the Dataverse source gets its tokens (shared/source/dataverse/settings.py): the app\'s identity registered as a Dataverse application user, or an app registration with its secret in Key Vault.')
param dataverseAuth string = 'managed-identity'

@description('Dataverse app registration (client-secret) or another user-assigned identity; empty: the app\'s identity.')
param dataverseClientId string = ''

@description('client-secret: the Key Vault secret URI holding the app registration\'s secret.')
param dataverseClientSecretUri string = ''

@description('NCRONTAB of the Dataverse delta poll (the timer binding reads it).')
param sourcePollSchedule string = '0 */1 * * * *'
@description('The Dataverse source\'s page queue, created by the storage module.')
param sourceQueueName string = 'des-source-pages'

@description('Python version of the Flex Consumption runtime.')
param pythonVersion string = '3.11'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

var serviceBusFqdn = '${serviceBusNamespaceName}.servicebus.windows.net'

// Every setting the code reads in Azure, by the names of shared/settings.py (shared/config.py) and
// the binding connections of function_app.py. Identity-based connections: <connection>__credential,
// __clientId and the service URI (Microsoft's documented identity-based connection settings).
var appSettings = {
  // Functions runtime storage + the blob trigger's connection (AzureWebJobsStorage)
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  // Service Bus trigger (connection ServiceBusConnection) and the publisher
  ServiceBusConnection__fullyQualifiedNamespace: serviceBusFqdn
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identityClientId
  ServiceBusQueueName: queueName
  DES_SERVICEBUS_MAX_MESSAGE_BYTES: serviceBusSku == 'Premium' ? '1048576' : '262144'
  // Blob storage: the Key Vault key that wraps every blob's content key
  DES_BLOB_KEY: blobKeyUri
  // Admin store in Azure SQL through the identity (the user name is its client id)
  DES_ADMIN_STORE: 'mssql://${identityClientId}@${sqlServerFqdn}:1433/${sqlDatabaseName}?authentication=ActiveDirectoryManagedIdentity&encrypt=yes'
  DES_ADMIN_ROLE: adminRole
  // Explicit, never guessed from the platform's variables (shared/hosting.py): Azure rules apply
  // (no SQLite admin store), and who may call the admin API.
  DES_HOSTING: 'azure'
  DES_AUTH_MODE: authMode
  // Key Vault keys and secrets, Azure SQL tokens (shared/identity.py): DefaultAzureCredential picks
  // the user-assigned identity by this
  AZURE_CLIENT_ID: identityClientId
  // The Dataverse source (docs/deploy.md "Registering the Dataverse application user")
  DES_SOURCE_POLL_SCHEDULE: sourcePollSchedule
  DES_SOURCE_QUEUE_NAME: sourceQueueName
  DES_DATAVERSE_AUTH: dataverseAuth
  DES_DATAVERSE_TENANT_ID: tenant().tenantId
  DES_DATAVERSE_CLIENT_ID: empty(dataverseClientId) ? identityClientId : dataverseClientId
  DES_DATAVERSE_CLIENT_SECRET_URI: dataverseClientSecretUri
  // Telemetry with Entra authentication (Application Insights local auth is off). host.json's
  // telemetryMode OpenTelemetry + PYTHON_ENABLE_OPENTELEMETRY: the host and the worker export with
  // OpenTelemetry; the app's configure_azure_monitor (shared/observability.py) exports its logs once.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225:Zone redundancy of a Flex Consumption plan is a regional option left to the operator.
  //checkov:skip=CKV_AZURE_211:FC1 is the Flex Consumption SKU; the check's list of production SKUs predates it.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_56:Admin API authentication is the app's own (function keys, or App Service authentication with an Entra app role when authMode is entra); the sync functions are not HTTP.
  //checkov:skip=CKV_AZURE_159:HTTP/2 is a siteConfig option Flex Consumption manages itself.
  //checkov:skip=CKV_AZURE_221:Public network access stays on: operators and sources call the admin API from outside any VNet; every route but /health requires a key or an Entra role.
  //checkov:skip=CKV_AZURE_222:Same reason as CKV_AZURE_221.
  //checkov:skip=CKV_AZURE_17:Callers authenticate with function keys or Entra tokens; incoming client certificates are not part of either mode.
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales instances itself (up to maximumInstanceCount); there is no minimum worker count to set on FC1.
  //checkov:skip=CKV_AZURE_213:Flex Consumption replaces unhealthy instances itself; the anonymous /health route is there for external monitors (docs/deploy.md).
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    virtualNetworkSubnetId: empty(appSubnetId) ? null : appSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// authMode entra: App Service authentication validates Entra tokens for the admin API (401
// without one); /health stays anonymous. The app checks the app role (DES_ADMIN_ROLE).
module auth 'appauth.bicep' = if (authMode == 'entra' && !empty(entraClientId)) {
  name: 'appauth'
  params: {
    functionAppName: functionApp.name
    entraClientId: entraClientId
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = functionApp.name
output uri string = 'https://${functionApp.properties.defaultHostName}'
