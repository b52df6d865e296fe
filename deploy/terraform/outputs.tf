output "queue_url" {
  description = "LIFECYCLED_QUEUE_URL (the chart's queueUrl)"
  value       = aws_sqs_queue.queue.id
}

output "queue_arn" {
  value = aws_sqs_queue.queue.arn
}

output "dead_letter_queue_url" {
  value = aws_sqs_queue.dead_letter.id
}

output "role_arn" {
  description = "The chart's serviceAccount.roleArn (empty without role_policy)"
  value       = var.role_policy == "none" ? "" : aws_iam_role.lifecycled[0].arn
}
