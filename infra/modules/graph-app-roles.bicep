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

// The Microsoft Graph service principal exists in every tenant under this well-known application id.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

// Role ids are looked up by value on the tenant's Graph service principal rather than pasted in as
// GUIDs, so a typo fails the deployment instead of granting something else. All three are read-only:
// the app never writes to Entra ID. One resource per role rather than a loop keeps loop variables out
// of the lambda, as in the published samples for this extension.
var graphAppRoles = microsoftGraph.appRoles

// Users and their /users/delta feed.
resource userReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: filter(graphAppRoles, appRole => appRole.value == 'User.Read.All')[0].id
}

// Groups named by mappings and their /groups/delta membership.
resource groupMemberReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: filter(graphAppRoles, appRole => appRole.value == 'GroupMember.Read.All')[0].id
}

// mailboxSettings.userPurpose, to tell shared mailboxes from disabled people.
resource mailboxSettingsRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: filter(graphAppRoles, appRole => appRole.value == 'MailboxSettings.Read')[0].id
}
