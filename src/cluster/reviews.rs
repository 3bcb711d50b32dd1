//! TokenReview and SubjectAccessReview through kube-apiserver.
