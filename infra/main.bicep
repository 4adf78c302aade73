// Entra ID -> Druva inSync provisioning: everything the Function App needs, in one resource group.
//
//   Graph change notifications -> webhook (HTTP) -> Service Bus queue -> worker -> Druva API
//   timer: keeps Graph subscriptions alive and runs delta passes; state in Table Storage.
//
// Secure by default: one user-assigned managed identity does everything, no account keys or SAS
// (shared-key access is off on storage, local auth is off on Service Bus and Application Insights),
// secrets live only in Key Vault (RBAC, soft delete, purge protection) and reach the app as Key Vault
// references, and every role assignment is scoped to the one resource it is about.
// Deploy and post-deploy steps: infra/README.md.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------

@description('Short name used in every resource name: 3-12 lowercase letters or digits, starting with a letter. A hash of the resource group id is appended for global uniqueness.')
@minLength(3)
@maxLength(12)
param baseName string

@description('Azure region for all resources. Must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Druva API gateway base URL (no trailing slash).')
param druvaApiUrl string = 'https://apis.druva.com'

@description('Druva API credential client id (Druva console > Settings > API Credentials). Not a secret; the matching secret goes into Key Vault after deployment as druva-client-secret.')
@minLength(1)
param druvaClientId string

@description('Also grant the Microsoft Graph application permissions User.Read.All, Group.Read.All and MailboxSettings.Read from this template. Off by default: a user-assigned identity created in the same deployment is often not yet replicated in Entra ID, and the assignment fails once. infra/scripts/grant-graph-permissions.sh does it as a separate, idempotent step that waits for replication (azd runs it after provisioning). Turn on only for an identity that already exists; the deploying user then needs AppRoleAssignment.ReadWrite.All and Application.Read.All.')
param grantGraphPermissions bool = false

@description('Optional object id of the admin (user or group) who will put the Druva secret and the Graph client state into Key Vault. Gets Key Vault Secrets Officer on this vault only. Leave empty to grant it yourself.')
param secretsOfficerPrincipalId string = ''

@description('Upper bound of Flex Consumption instances. Keeps Druva and Graph rate limits, and the bill, bounded.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Days to keep logs in the Log Analytics workspace.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('E-mail address that receives the alerts (dead-lettered work, safety stop, failing subscription upkeep, no successful pass, an account that keeps failing). See "Operating it" in the README.')
@minLength(3)
param alertEmail string

@description('Tags applied to every resource.')
param tags object = {}

// ---------------------------------------------------------------------------------------------------
// Names and constants
// ---------------------------------------------------------------------------------------------------

var token = toLower(uniqueString(resourceGroup().id, baseName))
var identityName = 'id-${baseName}-${token}'
var storageAccountName = take(toLower('st${replace(baseName, '-', '')}${token}'), 24)
var serviceBusNamespaceName = 'sb-${baseName}-${token}'
var keyVaultName = take('kv-${baseName}-${token}', 24)
var logAnalyticsName = 'log-${baseName}-${token}'
var appInsightsName = 'appi-${baseName}-${token}'
var planName = 'plan-${baseName}-${token}'
var functionAppName = 'func-${baseName}-${token}'

// Names the app code reads; changing them is a breaking change for the app.
var provisioningQueueName = 'provisioning-work'
var deploymentContainerName = 'app-package'
var druvaSecretName = 'druva-client-secret'
var graphClientStateSecretName = 'graph-client-state'

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------------------------
// Identity: the one principal the app runs as (host storage, deployment package, Service Bus,
// Table state, Key Vault references, Application Insights, Microsoft Graph).
// ---------------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------------
// Monitoring
// ---------------------------------------------------------------------------------------------------

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: logRetentionInDays
    features: {
      // Entra ID only: no workspace keys for ingestion or queries.
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    IngestionMode: 'LogAnalytics'
    // Telemetry is accepted only with an Entra token (the app's identity, Monitoring Metrics
    // Publisher below), so the instrumentation key in the connection string is not a credential.
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------------------------------------------
// Storage: Functions host (AzureWebJobsStorage: timer leases, host keys), the Flex deployment
// package, and the app's state tables.
// ---------------------------------------------------------------------------------------------------

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches host storage over the public endpoint; every request still needs an Entra token (shared keys are off).
  // checkov:skip=CKV_AZURE_59: Same as CKV_AZURE_35: public endpoint, identity-only access, no anonymous blob access.
  // checkov:skip=CKV_AZURE_206: LRS on purpose: the state tables are rebuilt by a full reconciliation from Entra ID and Druva.
  // checkov:skip=CKV_AZURE_43: The name is computed (toLower, take 24, letters and digits only), which checkov cannot evaluate.
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
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

// The app creates its own tables (Storage Table Data Contributor allows it).
resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// ---------------------------------------------------------------------------------------------------
// Service Bus: the work queue between the webhook/timer and the worker.
// ---------------------------------------------------------------------------------------------------

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: serviceBusNamespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    // No SAS keys: senders and receivers authenticate with Entra ID only.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource provisioningQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: provisioningQueueName
  properties: {
    // Fixed at creation and cannot be changed later: the app sets MessageId so that a burst of
    // Graph notifications for the same change collapses into one work item.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    requiresSession: false
    // The Functions host renews the lock up to maxAutoLockRenewalDuration (host.json), so a short lock
    // costs a renewal a minute, and the message of a worker that died comes back after a minute rather
    // than five. No shorter than the cursor lease (60 s): by then the dead worker's lease has lapsed.
    lockDuration: 'PT1M'
    // A poison message is tried 10 times, then parked in the dead-letter queue for an admin.
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
    enableBatchedOperations: true
    maxSizeInMegabytes: 1024
  }
}

// ---------------------------------------------------------------------------------------------------
// Key Vault: the Druva API secret and the Graph subscription clientState.
// Both secrets are created after deployment (infra/README.md): no secret value ever passes through
// this template, its parameters or the deployment history, and a redeploy never rotates the
// clientState under live Graph subscriptions.
// ---------------------------------------------------------------------------------------------------

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: App Service resolves Key Vault references over the public endpoint unless the app is VNet-integrated; access is Entra RBAC only and audited.
  // checkov:skip=CKV_AZURE_189: Same as CKV_AZURE_109.
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Who read or changed a secret, and when: Key Vault audit events go to the workspace.
resource keyVaultAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: keyVault
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------------
// Role assignments for the managed identity: least privilege, each scoped to one resource.
// ---------------------------------------------------------------------------------------------------

// Host storage and the Flex deployment package (blob), host queues, and the state tables.
resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Receive (worker trigger) and send (webhook, timer, retries) on the one queue, not the namespace.
resource serviceBusDataReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(provisioningQueue.id, identity.id, roles.serviceBusDataReceiver)
  scope: provisioningQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource serviceBusDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(provisioningQueue.id, identity.id, roles.serviceBusDataSender)
  scope: provisioningQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Read secret values for the Key Vault references; cannot list, set or delete them.
resource keyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, roles.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights accepts telemetry only from principals with this role (local auth is off).
resource monitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Optional: lets the named admin put the two secrets into this vault (and nothing else).
resource adminSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(secretsOfficerPrincipalId)) {
  name: guid(keyVault.id, secretsOfficerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: secretsOfficerPrincipalId
  }
}

// Microsoft Graph application permissions (Entra ID app role assignments, not Azure RBAC).
module graphAppRoles 'modules/graph-app-roles.bicep' = if (grantGraphPermissions) {
  name: 'graph-app-roles'
  params: {
    principalId: identity.properties.principalId
  }
}

// ---------------------------------------------------------------------------------------------------
// Function App on Flex Consumption
// ---------------------------------------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy is not offered for Flex Consumption in every region; work waits in Service Bus and Graph retries notifications through an outage.
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

// FTP stays off through the publishing-credentials policies below, not siteConfig.ftpsState: Flex
// Consumption does not support that site property, and newer regions refuse templates that set it.
resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_78: FTP is off through the ftp basicPublishingCredentialsPolicies below; Flex Consumption does not support siteConfig.ftpsState, which this rule reads.
  // checkov:skip=CKV_AZURE_222: Microsoft Graph must reach the webhook from the internet. Its routes are anonymous (Graph sends no credential); every notification must carry the secret clientState.
  // checkov:skip=CKV_AZURE_17: Microsoft Graph sends no client certificate to notification URLs.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero; queued work survives in Service Bus, so always-ready instances would only add cost.
  // checkov:skip=CKV_AZURE_213: Health check is an App Service feature for instance pools behind a load balancer; Flex Consumption manages instance health itself.
  name: functionAppName
  location: location
  // azd finds the app to deploy the `provisioning` service of azure.yaml to by this tag.
  tags: union(tags, { 'azd-service-name': 'provisioning' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    // Key Vault references are resolved with the user-assigned identity, not a system identity.
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No FTP and no basic-auth publishing: code is deployed with Entra ID credentials only.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// The host's Service Bus connection needs the bare host name: 'https://<ns>.servicebus.windows.net:443/'
// split on '/' gives ['https:', '', '<ns>.servicebus.windows.net:443', ''].
var serviceBusHostName = split(split(serviceBus.properties.serviceBusEndpoint, '/')[2], ':')[0]
var keyVaultSecretUri = '${keyVault.properties.vaultUri}secrets'

// App settings: a contract with the app code (provisioning/settings.py and the function bindings).
// A separate resource because the Graph URLs need the app's own default host name. It waits for the
// role assignments so that the host's first start already has its permissions.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13: checkov applies site-config rules to this appsettings resource. Graph notifications carry no Entra token, so App Service Authentication would reject them; the webhook routes are anonymous and accept only notifications that carry the secret clientState.
  // checkov:skip=CKV_AZURE_222: See the same skip on functionApp: Graph must reach the webhook.
  // checkov:skip=CKV_AZURE_63: HTTP logging is a Windows (IIS) App Service log; a Linux Flex app logs requests to Application Insights.
  // checkov:skip=CKV_AZURE_65: Detailed error pages are a Windows (IIS) feature; not applicable to a Linux Flex app.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is a Windows (IIS) feature; not applicable to a Linux Flex app.
  // checkov:skip=CKV_AZURE_80: .NET Framework version does not apply to a Python app.
  // checkov:skip=CKV_AZURE_88: Flex Consumption has no Azure Files content share (the deployment package is in blob storage).
  parent: functionApp
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__accountName: storage.name
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    ServiceBusConnection__fullyQualifiedNamespace: serviceBusHostName
    ServiceBusConnection__credential: 'managedidentity'
    ServiceBusConnection__clientId: identity.properties.clientId
    PROVISIONING_QUEUE: provisioningQueue.name
    PROVISIONING_TABLE_ENDPOINT: storage.properties.primaryEndpoints.table
    PROVISIONING_CONFIG: 'mappings.yaml'
    AZURE_CLIENT_ID: identity.properties.clientId
    AZURE_TENANT_ID: tenant().tenantId
    GRAPH_API_URL: 'https://graph.microsoft.com/v1.0'
    GRAPH_NOTIFICATION_URL: 'https://${functionApp.properties.defaultHostName}/api/graph/notifications'
    GRAPH_LIFECYCLE_URL: 'https://${functionApp.properties.defaultHostName}/api/graph/lifecycle'
    GRAPH_CLIENT_STATE: '@Microsoft.KeyVault(SecretUri=${keyVaultSecretUri}/${graphClientStateSecretName}/)'
    DRUVA_API_URL: druvaApiUrl
    DRUVA_CLIENT_ID: druvaClientId
    DRUVA_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultSecretUri}/${druvaSecretName}/)'
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    // The Python worker exports the app's own `provisioning` loggers through OpenTelemetry (the
    // azure-monitor-opentelemetry distro in requirements.txt): their structured fields become
    // customDimensions, which the alert rules in modules/alerts.bicep query.
    PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
    PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME: 'provisioning'
  }
  dependsOn: [
    tableService
    storageBlobDataOwner
    storageQueueDataContributor
    storageTableDataContributor
    serviceBusDataReceiver
    serviceBusDataSender
    keyVaultSecretsUser
    monitoringMetricsPublisher
  ]
}

// Alerts: an action group mailing alertEmail, and the rules that say when the app needs a human.
module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    tags: tags
    baseName: baseName
    appInsightsId: appInsights.id
    serviceBusNamespaceId: serviceBus.id
    queueName: provisioningQueue.name
    alertEmail: alertEmail
  }
}

// ---------------------------------------------------------------------------------------------------
// Outputs: names and ids for the post-deploy steps. No secrets, keys or connection strings.
// ---------------------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output keyVaultName string = keyVault.name
output storageAccountName string = storage.name
output deploymentContainerName string = deploymentContainer.name
output serviceBusNamespaceName string = serviceBus.name
output provisioningQueueName string = provisioningQueue.name
output managedIdentityClientId string = identity.properties.clientId
output managedIdentityPrincipalId string = identity.properties.principalId
output graphPermissionsGranted bool = grantGraphPermissions
