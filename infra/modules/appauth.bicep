// App Service authentication (Easy Auth) for authMode entra: Entra tokens for the app registration
// entraClientId are validated before a request reaches the admin API (401 without one); /health is
// excluded so probes stay anonymous. The app then requires the app role (DES_ADMIN_ROLE).
param functionAppName string
param entraClientId string

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:checkov applies this site-level check to the sites/config child (authsettingsV2), which has no such property; the site itself is checked above.
  //checkov:skip=CKV_AZURE_63:checkov applies this site-level check to the sites/config child (authsettingsV2), which has no such property; the site itself is checked above.
  //checkov:skip=CKV_AZURE_65:checkov applies this site-level check to the sites/config child (authsettingsV2), which has no such property; the site itself is checked above.
  //checkov:skip=CKV_AZURE_66:checkov applies this site-level check to the sites/config child (authsettingsV2), which has no such property; the site itself is checked above.
  //checkov:skip=CKV_AZURE_80:checkov applies this site-level check to the sites/config child (authsettingsV2), which has no such property; the site itself is checked above.
  //checkov:skip=CKV_AZURE_88:checkov applies this site-level check to the sites/config child (authsettingsV2), which has no such property; the site itself is checked above.
  //checkov:skip=CKV_AZURE_222:checkov applies this site-level check to the sites/config child (authsettingsV2), which has no such property; the site itself is checked above.
  parent: functionApp
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/health'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: entraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${entraClientId}'
            entraClientId
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
