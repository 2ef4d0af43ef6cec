-- A deployment that launched hosts is Failing or Aborting while it releases them: still
-- unfinished, so still the one unfinished deployment of its environment.
DROP INDEX deployments_one_unfinished;
CREATE UNIQUE INDEX deployments_one_unfinished ON deployments (environment)
    WHERE status IN ('Pending', 'InProgress', 'Failing', 'Aborting');
