// Microsoft Graph application permissions for the Function App's managed identity.
//
// Graph app roles are not Azure RBAC: they are app role assignments on the Microsoft Graph service
// principal in Entra ID, so they are declared through the Microsoft Graph Bicep extension (the alias
// is defined in ../bicepconfig.json). Whoever deploys this module needs AppRoleAssignment.ReadWrite.All
// and Application.Read.All in Entra ID (for example the Privileged Role Administrator role); main.bicep
// uses it only when grantGraphPermissions is true. By default the same grant is a separate, idempotent step
// that waits for the new identity to replicate: infra/scripts/grant-graph-permissions.sh.

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

// Users, their /users/delta feed, and the users change-notification subscription.
resource userReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: filter(graphAppRoles, appRole => appRole.value == 'User.Read.All')[0].id
}

// Groups named by mappings, their /groups/delta membership, and the groups change-notification
// subscription, which Graph allows only with Group.Read.All (GroupMember.Read.All is refused with 403).
// Group.Read.All includes reading members, so GroupMember.Read.All would add nothing.
resource groupReadAll 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: filter(graphAppRoles, appRole => appRole.value == 'Group.Read.All')[0].id
}

// mailboxSettings.userPurpose, to tell shared mailboxes from disabled people.
resource mailboxSettingsRead 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  principalId: principalId
  resourceId: microsoftGraph.id
  appRoleId: filter(graphAppRoles, appRole => appRole.value == 'MailboxSettings.Read')[0].id
}
