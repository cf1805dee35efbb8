cd /work/main
export OMP_NUM_THREADS=1
rlkd qd AGVOmni-v0 --algo dcg-me --seed 0 --out results/qd_steps_runs/critic1000_s0 --qd num_critic_training_steps=1000 --distill td3 --no-video > results/qd_steps_runs/critic1000_s0.log 2>&1 || rlkd qd --resume results/qd_steps_runs/critic1000_s0 --distill td3 --no-video >> results/qd_steps_runs/critic1000_s0.log 2>&1
rlkd qd AGVOmni-v0 --algo dcg-me --seed 0 --out results/qd_steps_runs/paper_s0 --paper-steps --distill td3 --no-video > results/qd_steps_runs/paper_s0.log 2>&1
