// The notifications queue (contract v1 messages from sources), Entra-only (local auth off).
// Lock 5 minutes: a batch applies within that, and the Functions host renews locks up to
// maxAutoLockRenewalDuration (host.json). Dead-lettering after maxDeliveryCount and on expiry.
param location string
param tags object
param name string
@allowed([
  'Standard'
  'Premium'
])
param sku string
param premiumCapacity int
param queueName string
param maxDeliveryCount int
param logAnalyticsWorkspaceId string

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  //checkov:skip=CKV_AZURE_199:Customer-managed keys need Premium; notification bodies carry record data only in flight (minutes) and larger payloads are client-side encrypted claim checks.
  //checkov:skip=CKV_AZURE_201:Same reason as CKV_AZURE_199 (customer-managed key encryption is a Premium-only feature).
  //checkov:skip=CKV_AZURE_204:Public network access stays on: Dataverse and other sources publish from outside any VNet this template could know; access is Entra-only (local auth off).
  name: name
  location: location
  tags: tags
  sku: {
    name: sku
    tier: sku
    capacity: sku == 'Premium' ? premiumCapacity : null
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource queue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: queueName
  properties: {
    lockDuration: 'PT5M'
    maxDeliveryCount: maxDeliveryCount
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    requiresSession: false
    enableBatchedOperations: true
    maxSizeInMegabytes: 5120
    maxMessageSizeInKilobytes: sku == 'Premium' ? 1024 : null
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: namespace
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
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output name string = namespace.name
output fqdn string = '${namespace.name}.servicebus.windows.net'
