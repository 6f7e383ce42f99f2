return await Bureau.Cli.BureauCli.RunAsync(args);
