# lifecycled's notice queue, as deploy/cloudformation/queue.yaml builds it: an encrypted SQS
# queue with a dead-letter queue, the EventBridge rules of lifecycled/rules.py, a queue policy
# letting only those rules send; optionally terminate lifecycle hooks on named groups and the
# IRSA role with docs/iam-kubernetes.json or docs/iam-ecs.json. `make package-check` compares
# this module with the CloudFormation template.

terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  # lifecycled/rules.py: one rule per kind, all targeting the queue.
  rules = {
    "spot-interruption" = {
      source      = ["aws.ec2"]
      detail-type = ["EC2 Spot Instance Interruption Warning"]
    }
    "rebalance-recommendation" = {
      source      = ["aws.ec2"]
      detail-type = ["EC2 Instance Rebalance Recommendation"]
    }
    "instance-state-change" = {
      source      = ["aws.ec2"]
      detail-type = ["EC2 Instance State-change Notification"]
      # Only the states that end a machine; pending/running are noise at fleet scale.
      detail = { state = ["stopping", "stopped", "shutting-down", "terminated"] }
    }
    "scheduled-change" = {
      source      = ["aws.health"]
      detail-type = ["AWS Health Event"]
      detail      = { service = ["EC2"], eventTypeCategory = ["scheduledChange"] }
    }
    "asg-terminate-hook" = {
      source      = ["aws.autoscaling"]
      detail-type = ["EC2 Instance-terminate Lifecycle Action"]
    }
    "asg-launch-hook" = {
      source      = ["aws.autoscaling"]
      detail-type = ["EC2 Instance-launch Lifecycle Action"]
    }
  }
}

resource "aws_sqs_queue" "dead_letter" {
  name                      = "${var.queue_name}-dlq"
  message_retention_seconds = var.dead_letter_retention_seconds
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "queue" {
  name                      = var.queue_name
  message_retention_seconds = var.message_retention_seconds
  # lifecycled long-polls and sets its own visibility timeout on every receive; these are
  # only the queue's defaults.
  receive_wait_time_seconds  = 20
  visibility_timeout_seconds = 60
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.queue.arn]
  })
}

resource "aws_cloudwatch_event_rule" "rule" {
  for_each      = local.rules
  name          = "${var.queue_name}-${each.key}"
  description   = "${join(", ", each.value["detail-type"])} -> lifecycled"
  event_pattern = jsonencode(each.value)
}

resource "aws_cloudwatch_event_target" "queue" {
  for_each  = local.rules
  rule      = aws_cloudwatch_event_rule.rule[each.key].name
  target_id = "lifecycled-queue"
  arn       = aws_sqs_queue.queue.arn
}

resource "aws_sqs_queue_policy" "queue" {
  queue_url = aws_sqs_queue.queue.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "EventBridgeRulesDeliverNotices"
        Effect    = "Allow"
        Principal = { Service = "events.amazonaws.com" }
        Action    = "sqs:SendMessage"
        Resource  = aws_sqs_queue.queue.arn
        Condition = { ArnEquals = { "aws:SourceArn" = [for r in aws_cloudwatch_event_rule.rule : r.arn] } }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "sqs:*"
        Resource  = aws_sqs_queue.queue.arn
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
}

resource "aws_autoscaling_lifecycle_hook" "terminate" {
  for_each               = toset(var.hook_group_names)
  name                   = "lifecycled-terminate"
  autoscaling_group_name = each.value
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = var.hook_heartbeat_timeout
  default_result         = var.hook_default_result
}
