// The actorvmm console program. The command line, machine set-up and exit-code contract live in this project.
return ActorVmm.Host.HostMain.Run(args);
