variable "queue_name" {
  type        = string
  default     = "lifecycled"
  description = "Name of the queue; also the prefix of the rules' and the dead-letter queue's names."
}

variable "max_receive_count" {
  type        = number
  default     = 5
  description = "Receives before a message moves to the dead-letter queue."
}

variable "message_retention_seconds" {
  type    = number
  default = 86400
}

variable "dead_letter_retention_seconds" {
  type    = number
  default = 1209600
}

variable "hook_group_names" {
  type        = list(string)
  default     = []
  description = "Auto Scaling groups to give a terminate lifecycle hook."
}

variable "hook_heartbeat_timeout" {
  type    = number
  default = 300
}

variable "hook_default_result" {
  type    = string
  default = "CONTINUE"
  validation {
    condition     = contains(["CONTINUE", "ABANDON"], var.hook_default_result)
    error_message = "CONTINUE or ABANDON."
  }
}

variable "role_policy" {
  type        = string
  default     = "none"
  description = "Create the IRSA role with docs/iam-kubernetes.json (kubernetes) or docs/iam-ecs.json (ecs)."
  validation {
    condition     = contains(["none", "kubernetes", "ecs"], var.role_policy)
    error_message = "none, kubernetes or ecs."
  }
}

variable "oidc_issuer" {
  type        = string
  default     = ""
  description = "The cluster's OIDC issuer without https://."
}

variable "service_account_namespace" {
  type    = string
  default = "lifecycled"
}

variable "service_account_name" {
  type    = string
  default = "lifecycled"
}

variable "autoscaling_group_name_prefix" {
  type    = string
  default = ""
}

variable "target_group_name_prefix" {
  type    = string
  default = ""
}

variable "classic_elb_name" {
  type    = string
  default = ""
}

variable "requeue_queue_name" {
  type    = string
  default = ""
}

variable "notify_topic_name" {
  type    = string
  default = ""
}

variable "ecs_cluster_name" {
  type    = string
  default = ""
}

variable "job_task_role_prefix" {
  type    = string
  default = ""
}
