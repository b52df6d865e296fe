"""Which cluster the nodes say they belong to (trust.cluster_names)."""

from lifecycled.trust import cluster_names


def test_names_from_eks_tags_and_the_eksctl_label() -> None:
    tags = [
        {"kubernetes.io/cluster/prod": "owned", "Name": "x"},
        {"aws:eks:cluster-name": "prod"},
        {"kubernetes.io/cluster/": "owned"},  # no name: nothing
    ]
    assert cluster_names([{"alpha.eksctl.io/cluster-name": "prod"}], tags) == {"prod"}


def test_no_tags_no_name_and_two_names_are_two() -> None:
    assert cluster_names([{}], [{"Name": "x"}]) == set()
    both = [{"aws:eks:cluster-name": "a"}, {"kubernetes.io/cluster/b": "shared"}]
    assert cluster_names([], both) == {"a", "b"}
