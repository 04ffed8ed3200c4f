// Key Vault, RBAC-only, soft delete + purge protection, holding the RSA key that wraps every blob's
// content key (DES_BLOB_KEY, shared/storage/crypto.py: RSA-OAEP-256) and the profiles' destination
// secrets (Key Vault secret URIs in profile definitions).
param location string
param tags object
param name string
param keyName string
param logAnalyticsWorkspaceId string

@description('Days a deleted vault or key can be recovered.')
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109:The firewall stays open (Allow): Flex Consumption without VNet integration reaches the vault over its public endpoint; access is Entra + RBAC only.
  //checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: public network access is needed without VNet integration.
  //checkov:skip=CKV2_AZURE_32:Private endpoints need a VNet this template does not create (optional VNet parameters only).
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// The key-encryption key. Versionless URI in DES_BLOB_KEY: each blob records the version that
// wrapped it, so rotating here needs no settings change (docs/storage.md).
resource key 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  //checkov:skip=CKV_AZURE_40:Expiry comes from the rotation policy (expiryTime P2Y on every rotated version); a fixed date here would change on every redeployment.
  //checkov:skip=CKV_AZURE_112:An HSM-backed key needs the Premium vault SKU; the software RSA key is the documented default, switch the vault to premium and kty to RSA-HSM where required.
  parent: vault
  name: keyName
  properties: {
    kty: 'RSA'
    keySize: 3072
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
    attributes: {
      enabled: true
    }
    rotationPolicy: {
      attributes: {
        expiryTime: 'P2Y'
      }
      lifetimeActions: [
        {
          action: {
            type: 'rotate'
          }
          trigger: {
            timeBeforeExpiry: 'P30D'
          }
        }
        {
          action: {
            type: 'notify'
          }
          trigger: {
            timeBeforeExpiry: 'P60D'
          }
        }
      ]
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
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

output name string = vault.name
output uri string = vault.properties.vaultUri
output keyUri string = '${vault.properties.vaultUri}keys/${keyName}'
