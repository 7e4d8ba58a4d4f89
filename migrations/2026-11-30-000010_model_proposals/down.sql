DROP TABLE model_proposal_votes;
DROP TABLE model_proposals;
