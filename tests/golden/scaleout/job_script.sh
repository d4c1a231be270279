#!/bin/bash

# Parameters
#SBATCH --account=ser-lab
#SBATCH --array=0-2%3
#SBATCH --constraint=a100
#SBATCH --error=<run>/slurm/%A_%a/%A_%a_0_log.err
#SBATCH --exclusive
#SBATCH --gpus-per-task=1
#SBATCH --job-name=serprof-quick
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=<run>/slurm/%A_%a/%A_%a_0_log.out
#SBATCH --partition=gpu
#SBATCH --qos=high
#SBATCH --signal=USR2@90
#SBATCH --time=120
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <run>/slurm/%A_%a/%A_%a_%t_log.out --error <run>/slurm/%A_%a/%A_%a_%t_log.err <python> -u -m submitit.core._submit <run>/slurm/%j
