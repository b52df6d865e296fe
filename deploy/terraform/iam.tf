# The IRSA role (role_policy = "kubernetes" or "ecs"): the policy is docs/iam-<policy>.json with
# its placeholders filled in; statements whose setting is not given are left out.

locals {
  account = data.aws_caller_identity.current.account_id
  documented = var.role_policy == "none" ? "{\"Statement\": []}" : file(
    "${path.module}/../../docs/iam-${var.role_policy}.json"
  )
  # Longest placeholder first: NOTICE_QUEUE_DLQ before NOTICE_QUEUE.
  filled = replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(
    replace(replace(local.documented, "arn:aws:", "arn:${data.aws_partition.current.partition}:"),
    "REGION", data.aws_region.current.name),
    "ACCOUNT", local.account),
    "NOTICE_QUEUE_DLQ", "${var.queue_name}-dlq"),
    "NOTICE_QUEUE", var.queue_name),
    "REQUEUE_QUEUE", var.requeue_queue_name),
    "NOTIFY_TOPIC", var.notify_topic_name),
    "ASG_NAME_PREFIX", var.autoscaling_group_name_prefix),
    "TARGET_GROUP_PREFIX", var.target_group_name_prefix),
    "CLASSIC_ELB_NAME", var.classic_elb_name),
    "JOB_TASK_ROLES", var.job_task_role_prefix),
  "CLUSTER", var.ecs_cluster_name)
  # The optional statements (by Sid), and the setting each needs.
  optional = {
    HandOffRequeuedJobsOnlyWithLifecycledRequeueQueueUrl    = var.requeue_queue_name
    TakeDrainingNodesOutOfTargetGroupsOnlyWithLbSettings    = var.target_group_name_prefix
    TakeDrainingNodesOutOfClassicElbsOnlyWithLbClassicNames = var.classic_elb_name
    PublishNotificationsOnlyWithLifecycledNotifySnsTopicArn = var.notify_topic_name
  }
  statements = [
    for s in jsondecode(local.filled).Statement : s
    if lookup(local.optional, s.Sid, "set") != ""
  ]
}

resource "aws_iam_role" "lifecycled" {
  count       = var.role_policy == "none" ? 0 : 1
  name_prefix = "lifecycled-"
  description = "lifecycled (IRSA)"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = "arn:${data.aws_partition.current.partition}:iam::${local.account}:oidc-provider/${var.oidc_issuer}" }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "${var.oidc_issuer}:sub" = "system:serviceaccount:${var.service_account_namespace}:${var.service_account_name}"
          "${var.oidc_issuer}:aud" = "sts.amazonaws.com"
        }
      }
    }]
  })
}

resource "aws_iam_role_policy" "lifecycled" {
  count  = var.role_policy == "none" ? 0 : 1
  name   = "lifecycled"
  role   = aws_iam_role.lifecycled[0].id
  policy = jsonencode({ Version = "2012-10-17", Statement = local.statements })
}
