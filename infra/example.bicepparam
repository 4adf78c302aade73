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

// Optional: object id of the admin or group that will set the two Key Vault secrets.
param secretsOfficerPrincipalId = ''

param maximumInstanceCount = 40
param instanceMemoryMB = 2048
