namespace Bureau.Engine;

/// <summary>Where in the loop a budget is checked.</summary>
internal enum BudgetPoint
{
    /// <summary>Before asking the model again: steps, tokens, time.</summary>
    BeforeModel,
    /// <summary>Right after a model answer was journaled: tokens (the answer may have gone over).</summary>
    AfterModel,
    /// <summary>Before a tool call: steps.</summary>
    BeforeTool,
}

/// <summary>
/// The one place a run's budgets are checked. Tokens and cost count the run's own model calls and what the agents it
/// delegated to used (their finished runs' reports); steps count its own loop.
/// </summary>
internal static class Budgets
{
    /// <summary>The budget that is exceeded at <paramref name="point"/>, as the journal entry that stops the run, or null.</summary>
    public static BudgetExceeded? Check(AgentBudgets budgets, RunState state, TimeSpan activeTime, BudgetPoint point)
    {
        switch (point)
        {
            case BudgetPoint.BeforeModel:
                if (budgets.MaxSteps is { } maxSteps && state.Steps >= maxSteps) return new BudgetExceeded("steps", maxSteps, state.Steps);
                if (budgets.MaxTokens is { } maxTokens && state.SpentTokens >= maxTokens) return new BudgetExceeded("tokens", maxTokens, state.SpentTokens);
                if (budgets.MaxWallTime is { } maxTime && activeTime >= maxTime)
                    return new BudgetExceeded("time", maxTime.TotalSeconds, Math.Round(activeTime.TotalSeconds, 3));
                if (budgets.MaxCost is { } maxCost && state.SpentCost >= maxCost) return new BudgetExceeded("cost", maxCost, Math.Round(state.SpentCost, 6));
                return null;
            case BudgetPoint.AfterModel:
                if (budgets.MaxTokens is { } limit && state.SpentTokens > limit) return new BudgetExceeded("tokens", limit, state.SpentTokens);
                return budgets.MaxCost is { } costLimit && state.SpentCost > costLimit ? new BudgetExceeded("cost", costLimit, Math.Round(state.SpentCost, 6)) : null;
            case BudgetPoint.BeforeTool:
                return budgets.MaxSteps is { } steps && state.Steps >= steps ? new BudgetExceeded("steps", steps, state.Steps) : null;
            default:
                throw new ArgumentOutOfRangeException(nameof(point), point, null);
        }
    }
}
