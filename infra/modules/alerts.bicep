// Alerts: when the provisioning app needs a human, an e-mail says so.
//
// Six conditions, each explained (what it means, what to do) in the README's "Operating it":
//   dead-lettered work        metric alert on the queue's DeadletteredMessages
//   safety stop               log alert: a pass whose outcome is safety_stop
//   subscription upkeep       log alert: the last two upkeep records both failed
//   no successful pass        log alert: no pass that ran to the end within the last hour
//   account keeps failing     log alert: one account in the failures of each of the last 3 passes
//   Druva refused a write     log alert: a refusal only a human can lift (no licence, privacy, a
//                             read-only credential, a duplicate e-mail), reported once when it happens
// The log alerts read the records provisioning/service/telemetry.py emits (traces whose
// customDimensions carry event, outcome, ...); tests/infra checks that every name and value the
// queries use is one the code defines.

@description('Azure region of the alert rules (action groups and metric alerts are global).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Resource id of the Application Insights component the app logs to.')
param appInsightsId string

@description('Resource id of the Service Bus namespace.')
param serviceBusNamespaceId string

@description('Name of the work queue whose dead-letter count is watched.')
param queueName string

@description('E-mail address that receives the alerts.')
@minLength(3)
param alertEmail string

@description('Short name used in the rule names.')
param baseName string

// The queries. Custom dimensions arrive as text: compare with tostring(), count with toint().
var everyPass = 'traces | where tostring(customDimensions.event) == \'provisioning.pass\''
var passes = '${everyPass} and tostring(customDimensions.dry_run) == \'false\''

var safetyStopQuery = '${passes} | where tostring(customDimensions.outcome) == \'safety_stop\''

// Passes that ran to the end; "account failures" still count (they have their own alert). A pass in
// plan-only mode (dry_run true: it writes nothing to Druva) counts too: the product runs.
var successfulPassQuery = '${everyPass} | where tostring(customDimensions.outcome) in (\'ok\', \'accounts_failed\')'

var upkeepQuery = '''
traces
| where tostring(customDimensions.event) == 'provisioning.upkeep'
| top 2 by timestamp desc
| summarize upkeeps = count(), failed = countif(tostring(customDimensions.outcome) == 'failed')
| where upkeeps == 2 and failed == 2
'''

// The last 3 passes that reached their end (an erroring pass is not in the run history either), and
// the accounts named in all three.
var failingAccountQuery = '${passes} | where tostring(customDimensions.outcome) != \'error\' | top 3 by timestamp desc | extend account = split(tostring(customDimensions.failed_accounts), \',\') | mv-expand account to typeof(string) | where isnotempty(account) | summarize passes = dcount(tostring(customDimensions.run_id)) by account | where passes >= 3'

// A refusal is emitted once, when Druva refuses; the account is then held (a day, or until its plan
// changes), so one alert per refusal, not one per pass.
var refusalQuery = 'traces | where tostring(customDimensions.event) == \'provisioning.refusal\''

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-${baseName}-provisioning'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'provisioning'
    enabled: true
    emailReceivers: [
      {
        name: 'admin'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-${baseName}-dead-letters'
  location: 'global'
  tags: tags
  properties: {
    description: 'A work item was dead-lettered after 10 failed deliveries: look at it in the dead-letter queue (README, Operating it).'
    severity: 1
    enabled: true
    scopes: [
      serviceBusNamespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                queueName
              ]
            }
          ]
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

resource safetyStop 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${baseName}-safety-stop'
  location: location
  tags: tags
  properties: {
    displayName: 'Provisioning: safety stop'
    description: 'A pass would have preserved more Druva users than safety.max_preserve_fraction allows and did nothing (README, Operating it).'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: safetyStopQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource noSuccessfulPass 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${baseName}-no-successful-pass'
  location: location
  tags: tags
  properties: {
    displayName: 'Provisioning: no successful pass in the last hour'
    description: 'The timer asks for a pass every 15 minutes; none ran to the end in the last hour (README, Operating it).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: successfulPassQuery
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource upkeepFailing 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${baseName}-subscription-upkeep'
  location: location
  tags: tags
  properties: {
    displayName: 'Provisioning: subscription upkeep failed twice in a row'
    description: 'Graph change-notification subscriptions could not be created or renewed twice running: new users arrive only with the 15-minute pass until fixed (README, Operating it).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: upkeepQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource accountFailing 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${baseName}-account-failing'
  location: location
  tags: tags
  properties: {
    displayName: 'Provisioning: an account failed in 3 passes in a row'
    description: 'The same Entra account could not be provisioned in the last 3 passes: `status` and `explain` say why (README, Operating it).'
    severity: 3
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT2H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: failingAccountQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource druvaRefused 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-${baseName}-druva-refused'
  location: location
  tags: tags
  properties: {
    displayName: 'Provisioning: Druva refused a write a human must unblock'
    description: 'Druva refused a create, activation or profile change that retrying will not fix (no free licence, a privacy conflict, a read-only credential, a duplicate e-mail): the alert record and `status` say what to do; the account is tried again within a day (README, Operating it).'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: refusalQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

output actionGroupId string = actionGroup.id
