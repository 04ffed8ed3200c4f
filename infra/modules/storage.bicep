// The one storage account: the Functions runtime (AzureWebJobsStorage, identity-based), the Flex
// deployment package container, and the data containers of shared/storage/blobs.py (CONTAINERS).
// Shared keys off, no public blob access, TLS 1.2; kept blobs deleted after keptBlobDays; an
// Event Grid system topic whose subscription (retry/ -> the blob trigger) the post-deploy step adds.
param location string
param tags object
param name string
param deploymentContainerName string
param keptBlobDays int
param logAnalyticsWorkspaceId string
param systemTopicName string
@description('The Dataverse source\'s page queue (DES_SOURCE_QUEUE_NAME).')
param sourceQueueName string = 'des-source-pages'

@description('Replication: zone-redundant by default (Flex Consumption supports ZRS storage).')
param skuName string = 'Standard_ZRS'

// shared/storage/blobs.py: DATA, RETRY, UNPROCESSABLE, FAILED, FAILURELOG (a unit test compares them).
var dataContainers = [
  'data'
  'retry'
  'unprocessablemessages'
  'failednotifications'
  'failurelog'
]
// Kept for an operator, then deleted (docs/storage.md: 30 days); the blob_retention timer does the
// same by hour folder and stays as the local path and a fallback.
var keptContainers = [
  'failurelog'
  'failednotifications'
  'unprocessablemessages'
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches its runtime storage over the public endpoint; access is Entra-only (shared keys off) and RBAC-scoped to the app's identity.
  //checkov:skip=CKV_AZURE_59:Same reason as CKV_AZURE_35: public network access stays on unless the app is VNet-integrated (appSubnetId), which this template leaves to the operator.
  //checkov:skip=CKV_AZURE_33:Queue service request logs go to Log Analytics through the queueServices diagnostic setting below (classic Storage Analytics logging needs shared keys, which are off).
  //checkov:skip=CKV2_AZURE_1:Customer-managed keys for storage encryption at rest are not needed: every blob with record data is already client-side encrypted with the Key Vault key (docs/storage.md).
  //checkov:skip=CKV_AZURE_206:Zone-redundant (ZRS) by default; geo-replication (skuName Standard_GZRS) is the operator's cost choice, and the blobs are in-flight or 30-day operator copies.
  //checkov:skip=CKV2_AZURE_33:Private endpoints need a VNet this template does not create (optional VNet parameters only).
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in dataContainers: {
    parent: blobService
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

// The blob trigger's poison queue (webjobs-blobtrigger-poison) and the host's own queues.
resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// The Dataverse source's page queue (DES_SOURCE_QUEUE_NAME): one message per page of an initial sync or delta pass.
resource sourcePagesQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: sourceQueueName
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-kept-blobs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
                'appendBlob'
              ]
              prefixMatch: [for c in keptContainers: '${c}/']
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: keptBlobDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: location
  tags: tags
  properties: {
    source: account.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

resource accountDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    metrics: [
      {
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
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
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
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
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource topicDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: systemTopic
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'DeliveryFailures'
        enabled: true
      }
    ]
  }
}

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output systemTopicName string = systemTopic.name
