// Example parameters for infra/main.bicep with plain `az` (azd reads infra/main.parameters.json instead).
// Copy it (for example to infra/prod.bicepparam), replace every <placeholder>, and deploy with the command
// in infra/README.md. Never put a secret in this file: the Druva client secret and the Graph client state
// go straight into Key Vault after deployment.
using './main.bicep'

// 3-12 lowercase letters or digits, starting with a letter; appears in every resource name.
param baseName = '<short-name>'

// Druva console > Settings > API Credentials: the client id (the secret goes into Key Vault).
param druvaClientId = '<druva-api-client-id>'

// Druva API gateway; change only if Druva gave your tenant another one.
param druvaApiUrl = 'https://apis.druva.com'

// false: grant the three Graph permissions after deployment with infra/scripts/grant-graph-permissions.sh
// (a new identity needs a few minutes to replicate; the script waits). true: only for an identity that
// already exists, and the deploying user needs AppRoleAssignment.ReadWrite.All and Application.Read.All.
param grantGraphPermissions = false

// Who gets the alerts (README, "Operating it"): a person or, better, a team mailbox.
param alertEmail = '<admin-email>'

// Optional: object id of the admin or group that will set the two Key Vault secrets (Key Vault Secrets
// Officer on this vault; remove it once they are set: infra/README.md, "Deploy with az").
param secretsOfficerPrincipalId = ''

// Optional: object id of an Entra group of operators (dead letters and `status`, read-only).
param operatorsGroupId = ''

// The addresses you deploy code from, as CIDRs, comma-separated ('203.0.113.7/32'): Kudu/SCM answers no
// other. Empty: nobody can deploy code until you add one.
param scmAllowedIpRanges = ''

// plan: the app plans and records, writes nothing to Druva, until `python -m provisioning mode apply`.
param initialMode = 'plan'

// During a Graph client state rotation only: the version id of the previous graph-client-state secret.
param graphClientStatePreviousVersion = ''

// The first deployment's budget start (output budgetStartDate): set it here after that deployment, since
// Azure refuses to change a budget's start date. Empty: the current month.
param budgetStartDate = ''
param monthlyBudget = 100

param maximumInstanceCount = 40
param instanceMemoryMB = 2048
param alwaysReadyHttpInstances = 1
param httpPerInstanceConcurrency = 16
param maxRequestBodyBytes = 4194304
param druvaMaxConcurrency = 16
param logLevel = 'WARNING'
param logRetentionInDays = 90
