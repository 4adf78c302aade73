// Microsoft Graph application permissions for the Function App's managed identity.
//
// Graph app roles are not Azure RBAC: they are app role assignments on the Microsoft Graph service
// principal in Entra ID, so they are declared through the Microsoft Graph Bicep extension (the alias
// is defined in ../bicepconfig.json). Whoever deploys this module needs AppRoleAssignment.ReadWrite.All
// and Application.Read.All in Entra ID (for example the Privileged Role Administrator role); main.bicep
// skips it when grantGraphPermissions is false, and infra/README.md shows the `az rest` alternative.

extension microsoftGraphV1

@description('Object (principal) id of the user-assigned managed identity that calls Microsoft Graph.')
param principalId string

// Graph application permissions, by value. All read-only: the app never writes to Entra ID. A variable,
// not a parameter, so that a parameters file cannot quietly widen what the identity may read.
var appRoles = [
  'User.Read.All' // users and their /users/delta feed
  'GroupMember.Read.All' // groups named by mappings and their /groups/delta membership
  'MailboxSettings.Read' // userPurpose, to tell shared mailboxes from disabled people
]

// The Microsoft Graph service principal exists in every tenant under this well-known application id.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

// Role ids are looked up by value on the tenant's Graph service principal rather than pasted as GUIDs,
// so a typo fails the deployment instead of granting something else.
resource graphAppRoleAssignments 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for role in appRoles: {
    principalId: principalId
    resourceId: microsoftGraph.id
    appRoleId: filter(microsoftGraph.appRoles, appRole => appRole.value == role)[0].id
  }
]
