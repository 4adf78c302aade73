// Entra ID -> Druva inSync provisioning: everything the Function App needs, in one resource group.
//
//   Graph change notifications -> webhook (HTTP) -> Service Bus queue -> worker -> Druva API
//   timer: keeps Graph subscriptions alive and runs delta passes; state in Table Storage.
//
// Secure by default: the app runs as one user-assigned managed identity, and a second one, with no
// other role, only writes and reads the deployment package in a storage account of its own, so the
// runtime identity cannot replace its own code. No account keys or SAS (shared-key access is off on
// storage, local auth is off on Service Bus and Application Insights); secrets live only in Key Vault
// (RBAC, soft delete, purge protection) and reach the app as Key Vault references; every role assignment
// is scoped to the one resource it is about; Kudu/SCM answers only the addresses in scmAllowedIpRanges.
// Audit logs of storage, Service Bus, Key Vault and the app go to Log Analytics (90 days or more), and a
// budget mails alertEmail. A fresh deployment starts in plan-only mode (initialMode).
// The resource group is a security boundary: whoever can change it can read the directory and the Druva
// credential through the app. Deploy and post-deploy steps: infra/README.md.

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

@description('Optional object id of the admin (user or group) who will put the Druva secret and the Graph client state into Key Vault. Gets Key Vault Secrets Officer on this vault only, for the bootstrap: the azd post-provision hook removes the assignment (output bootstrapRoleAssignmentId) once both secrets are in the vault. Leave empty to grant it yourself.')
param secretsOfficerPrincipalId string = ''

@description('Optional object id of an Entra group of operators. Gets Azure Service Bus Data Receiver on the work queue (to read dead letters) and Storage Table Data Reader on the state storage account (for `python -m provisioning status`). Empty: none; infra/README.md gives the commands.')
param operatorsGroupId string = ''

@description('Where a fresh deployment starts: plan (passes are planned and recorded, nothing is written to Druva, until an admin runs `python -m provisioning mode apply --confirm-creates N`) or apply. Only a state with no mode recorded reads it, so a redeploy never switches a live deployment back.')
@allowed([
  'plan'
  'apply'
])
param initialMode string = 'plan'

@description('During a Graph client state rotation: the version id of the previous graph-client-state secret in Key Vault (the app then accepts both). Not a secret: the app setting becomes a Key Vault reference to that version. Empty outside a rotation.')
param graphClientStatePreviousVersion string = ''

@description('Most Druva requests one client keeps in flight (DRUVA_MAX_CONCURRENCY); it adapts below this to what Druva allows.')
@minValue(1)
@maxValue(256)
param druvaMaxConcurrency int = 16

@description('Log level of the app\'s own loggers (PROVISIONING_LOG_LEVEL).')
@allowed([
  'DEBUG'
  'INFO'
  'WARNING'
  'ERROR'
])
param logLevel string = 'WARNING'

@description('Addresses allowed to reach the app\'s SCM/Kudu site, through which code is deployed (azd deploy, func azure functionapp publish): CIDRs, comma-separated, for example 203.0.113.7/32. Empty: no address at all. The app\'s own endpoint stays open: Microsoft Graph must reach the webhook.')
param scmAllowedIpRanges string = ''

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

@description('HTTP instances kept running (Flex always ready) so that Graph\'s validation request (10 s) and notifications (3 s) never meet a cold start. Each one is billed all month for its memory (infra/README.md, "Cost"); 0 scales the webhook to zero.')
@minValue(0)
@maxValue(20)
param alwaysReadyHttpInstances int = 1

@description('Concurrent HTTP requests one instance takes before Flex adds another: with maximumInstanceCount, bounds what an anonymous flood can cost.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Largest HTTP request body the Functions host accepts, in bytes (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT): a Graph notification batch is a few kB.')
@minValue(65536)
@maxValue(104857600)
param maxRequestBodyBytes int = 4194304

@description('Days to keep logs in the Log Analytics workspace: the audit logs of storage, Service Bus, Key Vault and the app, and the app\'s telemetry. At least 90.')
@minValue(90)
@maxValue(730)
param logRetentionInDays int = 90

@description('Monthly cost budget for this resource group, in the billing account\'s currency: alertEmail gets a mail at 80 % of the actual cost and when the forecast passes 100 %. 0: no budget.')
@minValue(0)
param monthlyBudget int = 100

@description('First day of the month the budget starts (yyyy-MM-01). Empty: the month of the first deployment. Azure refuses to change a budget\'s start date, so every later deployment must pass the same value (the output budgetStartDate; azd keeps it as BUDGET_START_DATE).')
param budgetStartDate string = ''

@description('Leave as it is: the month of this deployment, the budget\'s start when budgetStartDate is empty.')
param deploymentMonth string = utcNow('yyyy-MM-01')

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
var packageIdentityName = 'id-${baseName}-deploy-${token}'
var storageAccountName = take(toLower('st${replace(baseName, '-', '')}${token}'), 24)
// The token first: the name must stay unique when baseName is long and the whole is cut to 24.
var packageStorageAccountName = take(toLower('stpkg${token}${replace(baseName, '-', '')}'), 24)
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
var budgetStart = empty(budgetStartDate) ? deploymentMonth : budgetStartDate
// The SCM allow-list, one CIDR per entry (spaces ignored); an empty parameter leaves none.
var scmAllowList = empty(scmAllowedIpRanges) ? [] : split(replace(scmAllowedIpRanges, ' ', ''), ',')
var bootstrapRole = !empty(secretsOfficerPrincipalId)
// Warm HTTP instances; none is left out rather than sent as a zero count (Flex's own default).
var alwaysReadyHttp = alwaysReadyHttpInstances > 0 ? [{ name: 'http', instanceCount: alwaysReadyHttpInstances }] : []

// Built-in role definition ids (the same in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageTableDataReader: '76199698-9eea-4c19-bc75-cec21354c6b6'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------------------------
// Identities: the principal the app runs as (host storage, Service Bus, Table state, Key Vault
// references, Application Insights, Microsoft Graph), and the one the platform writes and reads the
// deployment package with. The runtime identity holds no role on the package, so neither a leaked
// runtime token nor the identity attached elsewhere can replace the deployed code.
// ---------------------------------------------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

resource packageIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: packageIdentityName
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
// Storage: Functions host (AzureWebJobsStorage: timer leases, host keys) and the app's state tables
// here; the Flex deployment package in an account of its own (below), which only the package
// identity can write.
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

// The app creates its own tables (Storage Table Data Contributor allows it).
resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The deployment package: the same hardening, its own account, one container.
resource packageStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reads the package over the public endpoint; every request still needs an Entra token (shared keys are off).
  // checkov:skip=CKV_AZURE_59: Same as CKV_AZURE_35: public endpoint, identity-only access, no anonymous blob access.
  // checkov:skip=CKV_AZURE_206: LRS on purpose: the package is rebuilt by the next deployment.
  // checkov:skip=CKV_AZURE_43: The name is computed (toLower, take 24, letters and digits only), which checkov cannot evaluate.
  // checkov:skip=CKV_AZURE_33: No queue service is used in this account.
  name: packageStorageAccountName
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
      }
    }
  }
}

resource packageBlobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: packageStorage
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
  parent: packageBlobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
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

// ---------------------------------------------------------------------------------------------------
// Audit: resource logs into the workspace (kept logRetentionInDays, at least 90). Who read or changed a
// secret (Key Vault); who read the host keys or wrote the deployment package (blob logs of both
// accounts); who read or wrote the state (table logs); Service Bus operations; the app's own logs.
// ---------------------------------------------------------------------------------------------------

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

// Host keys live in this account's azure-webjobs-secrets container: every read is logged.
resource hostBlobAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource stateTableAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

// A write here is a deployment: the trail of every package replacement.
resource packageBlobAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: packageBlobService
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource serviceBusAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: serviceBus
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------------
// Role assignments: least privilege, each scoped to one resource.
// ---------------------------------------------------------------------------------------------------

// Host storage (AzureWebJobsStorage: host keys, timer and singleton leases). Not the package account.
resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
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

// The package identity's one role: the platform writes the package there on a deployment and reads it
// at start-up (what `az functionapp create --deployment-storage-auth-type UserAssignedIdentity` grants).
resource packageBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(packageStorage.id, packageIdentity.id, roles.storageBlobDataContributor)
  scope: packageStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: packageIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Bootstrap only: lets the named admin put the two secrets into this vault (and nothing else). The azd
// post-provision hook deletes it again once both secrets are there (output bootstrapRoleAssignmentId).
resource bootstrapVaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (bootstrapRole) {
  name: guid(keyVault.id, secretsOfficerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: secretsOfficerPrincipalId
  }
}

// Optional: operators read dead letters (Service Bus Explorer peeks with Data Receiver; the dead-letter
// queue is part of the queue, it has no scope of its own) and the state `status` reads.
resource operatorsDeadLetters 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorsGroupId)) {
  name: guid(provisioningQueue.id, operatorsGroupId, roles.serviceBusDataReceiver)
  scope: provisioningQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: operatorsGroupId
    principalType: 'Group'
  }
}

resource operatorsStatus 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorsGroupId)) {
  name: guid(storage.id, operatorsGroupId, roles.storageTableDataReader)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataReader)
    principalId: operatorsGroupId
    principalType: 'Group'
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
  // checkov:skip=CKV_AZURE_222: Microsoft Graph must reach the webhook from the internet. Its routes are anonymous (Graph sends no credential); every notification must carry the secret clientState. Kudu/SCM is restricted to scmAllowedIpRanges.
  // checkov:skip=CKV_AZURE_17: Microsoft Graph sends no client certificate to notification URLs.
  // checkov:skip=CKV_AZURE_212: Flex Consumption keeps HTTP instances warm through functionAppConfig.scaleAndConcurrency.alwaysReady (alwaysReadyHttpInstances), which this rule does not read.
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
      '${packageIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    // Key Vault references are resolved with the runtime identity, not a system identity.
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      // The app's endpoint stays reachable: Microsoft Graph delivers notifications from the internet.
      ipSecurityRestrictionsDefaultAction: 'Allow'
      // Kudu/SCM (code deployment) has its own rules: the allow-list, then deny everything else.
      scmIpSecurityRestrictionsUseMain: false
      scmIpSecurityRestrictionsDefaultAction: 'Deny'
      scmIpSecurityRestrictions: [for (cidr, i) in scmAllowList: {
        name: 'deploy-${i}'
        description: 'scmAllowedIpRanges'
        ipAddress: cidr
        action: 'Allow'
        priority: 100 + i
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${packageStorage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: packageIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReadyHttp
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
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

// The app's own logs and its platform audit logs (publishing logins, access-restriction hits).
resource functionAppAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: functionApp
  properties: {
    workspaceId: logAnalytics.id
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

// The host's Service Bus connection needs the bare host name: 'https://<ns>.servicebus.windows.net:443/'
// split on '/' gives ['https:', '', '<ns>.servicebus.windows.net:443', ''].
var serviceBusHostName = split(split(serviceBus.properties.serviceBusEndpoint, '/')[2], ':')[0]
var keyVaultSecretUri = '${keyVault.properties.vaultUri}secrets'

// App settings: a contract with the app code (provisioning/settings.py and the function bindings).
// This resource replaces every setting on each deployment, so everything an admin may tune is a
// parameter here, never a setting changed by hand (a provision would drop it).
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
    // Read only by a state that records no mode yet: a fresh deployment plans before it writes.
    PROVISIONING_INITIAL_MODE: initialMode
    PROVISIONING_LOG_LEVEL: logLevel
    AZURE_CLIENT_ID: identity.properties.clientId
    AZURE_TENANT_ID: tenant().tenantId
    GRAPH_API_URL: 'https://graph.microsoft.com/v1.0'
    GRAPH_NOTIFICATION_URL: 'https://${functionApp.properties.defaultHostName}/api/graph/notifications'
    GRAPH_LIFECYCLE_URL: 'https://${functionApp.properties.defaultHostName}/api/graph/lifecycle'
    GRAPH_CLIENT_STATE: '@Microsoft.KeyVault(SecretUri=${keyVaultSecretUri}/${graphClientStateSecretName}/)'
    // During a rotation, the old version of the same secret; blank (the app reads it as unset) otherwise.
    GRAPH_CLIENT_STATE_PREVIOUS: empty(graphClientStatePreviousVersion) ? '' : '@Microsoft.KeyVault(SecretUri=${keyVaultSecretUri}/${graphClientStateSecretName}/${graphClientStatePreviousVersion})'
    DRUVA_API_URL: druvaApiUrl
    DRUVA_CLIENT_ID: druvaClientId
    DRUVA_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${keyVaultSecretUri}/${druvaSecretName}/)'
    DRUVA_MAX_CONCURRENCY: string(druvaMaxConcurrency)
    // The Functions host refuses larger request bodies before any code runs (the webhooks' size cap).
    FUNCTIONS_REQUEST_BODY_SIZE_LIMIT: string(maxRequestBodyBytes)
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
    storageTableDataContributor
    serviceBusDataReceiver
    serviceBusDataSender
    keyVaultSecretsUser
    packageBlobDataContributor
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

// Cost guard: an anonymous endpoint that scales out is a bill that can grow; alertEmail hears first.
resource budget 'Microsoft.Consumption/budgets@2024-08-01' = if (monthlyBudget > 0) {
  name: 'budget-${baseName}'
  properties: {
    category: 'Cost'
    amount: monthlyBudget
    timeGrain: 'Monthly'
    timePeriod: {
      startDate: budgetStart
    }
    notifications: {
      actual80: {
        enabled: true
        operator: 'GreaterThanOrEqualTo'
        threshold: 80
        thresholdType: 'Actual'
        contactEmails: [
          alertEmail
        ]
      }
      forecast100: {
        enabled: true
        operator: 'GreaterThan'
        threshold: 100
        thresholdType: 'Forecasted'
        contactEmails: [
          alertEmail
        ]
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Outputs: names and ids for the post-deploy steps. No secrets, keys or connection strings.
// ---------------------------------------------------------------------------------------------------

output functionAppName string = functionApp.name
output functionAppHostName string = functionApp.properties.defaultHostName
output keyVaultName string = keyVault.name
output storageAccountName string = storage.name
output stateTableEndpoint string = storage.properties.primaryEndpoints.table
output packageStorageAccountName string = packageStorage.name
output deploymentContainerName string = deploymentContainer.name
output serviceBusNamespaceName string = serviceBus.name
output provisioningQueueName string = provisioningQueue.name
output managedIdentityClientId string = identity.properties.clientId
output managedIdentityPrincipalId string = identity.properties.principalId
output graphPermissionsGranted bool = grantGraphPermissions
output bootstrapRoleAssignmentId string = bootstrapRole ? bootstrapVaultRole.id : ''
output budgetStartDate string = monthlyBudget > 0 ? budgetStart : ''
